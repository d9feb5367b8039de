"""Drawing: pure functions from tensors to RGB arrays and matplotlib figures.

Nothing here knows about widgets; the notebooks' sliders only call these functions. Figures are
built with ``matplotlib.figure.Figure`` rather than ``pyplot``, so they are not registered with
pyplot's figure manager: nothing is left open behind the caller's back, a figure is freed when the
last reference to it goes, and a notebook shows a returned figure exactly once (with the inline
backend active, e.g. after ``%matplotlib inline``). No global style (rcParams) is touched.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from .data import IGNORE_INDEX

Array = torch.Tensor | np.ndarray  # tensors and NumPy arrays are both accepted
Colors = Sequence[Sequence[int]]  # one (r, g, b) in 0..255 per class

VOID_COLOR = (0, 0, 0)  # void's colour, unless a class has it (``void_color_for``)
CORRECT_COLOR = (40, 160, 40)
WRONG_COLOR = (230, 30, 30)
HIGHLIGHT_COLOR = (255, 230, 0)


def _numpy(x) -> np.ndarray:
    return torch.as_tensor(x).detach().cpu().numpy()


def _rgb01(color: Sequence[int]) -> tuple[float, float, float]:
    return tuple(v / 255 for v in color)


def void_color_for(colors: Colors) -> tuple[int, int, int]:
    """Return the colour void is drawn in beside ``colors``: ``VOID_COLOR`` (black), or, when a class
    is black (a binary dataset's background often is), white or else the first grey no class has."""
    taken = {tuple(int(v) for v in color) for color in colors}
    candidates = [VOID_COLOR, (255, 255, 255)] + [(g, g, g) for g in range(1, 255)]
    return next(c for c in candidates if c not in taken)  # 256 candidates, at most 255 classes (ids 0-254)


def colorize(mask: Array, colors: Colors, void_color: Sequence[int] | None = None) -> np.ndarray:
    """Return an RGB picture of a class-id mask; void (255) is drawn in ``void_color``, by default
    ``void_color_for(colors)``: black unless a class is black.

    Shape:
        mask (H, W) int -> (H, W, 3) uint8.
    """
    mask = _numpy(mask)
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(colors)] = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    palette[IGNORE_INDEX] = void_color_for(colors) if void_color is None else void_color
    return palette[mask.astype(np.int64).clip(0, 255)]


def _hwc_uint8(image) -> np.ndarray:
    """Accept (3, H, W) float in [0, 1] or uint8 tensors, or (H, W, 3) arrays; return (H, W, 3) uint8."""
    array = torch.as_tensor(image).detach().cpu()
    if array.ndim == 3 and array.shape[0] == 3 and array.shape[-1] != 3:
        array = array.permute(1, 2, 0)
    if array.is_floating_point():
        array = (array.clamp(0, 1) * 255).round()
    return array.to(torch.uint8).numpy()


def overlay(image: Array, mask_rgb: Array, alpha: float = 0.5) -> np.ndarray:
    """Return ``image`` blended with a colourised mask at opacity ``alpha`` (0: image, 1: mask).

    Shape:
        image (H, W, 3) or (3, H, W), mask_rgb (H, W, 3) uint8 -> (H, W, 3) uint8.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    image = _hwc_uint8(image).astype(np.float32)
    blended = (1 - alpha) * image + alpha * np.asarray(mask_rgb, dtype=np.float32)
    return blended.round().astype(np.uint8)


def error_map(pred: Array, target: Array, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Return an RGB map of a prediction's errors: correct, wrong and void pixels in three colours.

    Correct pixels are ``CORRECT_COLOR`` (green), wrong ones ``WRONG_COLOR`` (red) and void pixels
    of the target ``VOID_COLOR`` (black), whatever was predicted there.

    Shape:
        pred (H, W), target (H, W) int -> (H, W, 3) uint8.
    """
    pred, target = _numpy(pred), _numpy(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} must have the same shape.")
    out = np.empty((*target.shape, 3), dtype=np.uint8)
    out[...] = WRONG_COLOR
    out[pred == target] = CORRECT_COLOR
    out[target == ignore_index] = VOID_COLOR
    return out


def highlight_class(
    image: Array,
    mask: Array,
    class_id: int,
    color: Sequence[int] = HIGHLIGHT_COLOR,
    alpha: float = 0.6,
    dim: float = 0.35,
) -> np.ndarray:
    """Return ``image`` with the pixels of one class tinted in ``color`` and every other pixel dimmed.

    Pixels where ``mask == class_id`` become ``(1 - alpha) * image + alpha * color``; the rest are
    multiplied by ``dim`` (0: black, 1: unchanged), so the class stands out even when it is small.

    Shape:
        image (H, W, 3) or (3, H, W), mask (H, W) int -> (H, W, 3) uint8.
    """
    if not (0 <= alpha <= 1 and 0 <= dim <= 1):
        raise ValueError(f"alpha and dim must be in [0, 1], got alpha={alpha}, dim={dim}.")
    image = _hwc_uint8(image).astype(np.float32)
    mask = _numpy(mask)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match the image's (H, W) {image.shape[:2]}.")
    out = image * dim
    hit = mask == class_id
    out[hit] = (1 - alpha) * image[hit] + alpha * np.asarray(color, dtype=np.float32)
    return out.round().astype(np.uint8)


VOID_LABEL = "void (not scored)"


def class_key(classes: Sequence[str], colors: Colors, void: bool = True) -> list[tuple[str, Sequence[int]]]:
    """Return the (label, colour) entries of a mask's legend: each class, then (unless ``void=False``,
    for labels that cannot hold void) void in the colour ``colorize`` draws it (``void_color_for``)."""
    entries = [(name, color) for name, color in zip(classes, colors, strict=True)]
    return (entries + [(VOID_LABEL, void_color_for(colors))]) if void else entries


ERROR_KEY = [("correct", CORRECT_COLOR), ("wrong", WRONG_COLOR), (VOID_LABEL, VOID_COLOR)]


def _handles(key) -> list[Patch]:
    return [Patch(facecolor=_rgb01(c), edgecolor="black", linewidth=0.5, label=label) for label, c in key]


def legend(classes: Sequence[str], colors: Colors, ncols: int = 4, void: bool = True) -> Figure:
    """Return a figure showing each class name beside its colour swatch (the palette), void last.

    ``void=False`` leaves out the void entry (pixels the loss and the metrics ignore).
    """
    key = class_key(classes, colors, void)
    return key_figure([(f"{i}  {name}" if i < len(classes) else name, c) for i, (name, c) in enumerate(key)],
                      ncols)  # fmt: skip


def key_figure(key: Sequence[tuple[str, Sequence[int]]], ncols: int = 4) -> Figure:
    """Return a figure holding only a legend of (label, colour) entries (e.g. ``ERROR_KEY``), as
    large as the legend: drawn at its own size, its text is as large as the notebook's."""
    fig = Figure(figsize=(2.2 * ncols, 0.32 * math.ceil(len(key) / ncols) + 0.2))
    ax = fig.add_axes((0, 0, 1, 1))  # Jupyter does not display a figure without axes
    ax.set_axis_off()
    box = ax.legend(handles=_handles(key), loc="center", ncol=ncols, frameon=False, handlelength=2.2,
                    fontsize=10)  # fmt: skip
    extent = box.get_window_extent(FigureCanvasAgg(fig).get_renderer())
    fig.set_size_inches(extent.width / fig.dpi + 0.1, extent.height / fig.dpi + 0.1)
    return fig


def _as_picture(image, colors):
    array = _numpy(image)
    if array.ndim == 2:
        if colors is None:
            raise ValueError("a 2-D entry is a class-id mask: pass colors= to draw it.")
        return colorize(array, colors)
    return _hwc_uint8(image)


def side_by_side(
    images: Sequence[Array],
    titles: Sequence[str] | None = None,
    colors: Colors | None = None,
    size: float = 4.0,
    classes: Sequence[str] | None = None,
    key: Sequence[tuple[str, Sequence[int]]] | None = None,
    void: bool = True,
) -> Figure:
    """Return a figure with the pictures in one row, each under its title, without axes.

    Entries may be RGB images, float in [0, 1] or uint8, or class-id masks, which are colourised
    with ``colors``. With ``classes`` (and ``colors``) a legend of the classes and of void (unless
    ``void=False``, for labels that cannot hold it) is drawn under the row; ``key`` draws any other
    legend, e.g. ``ERROR_KEY`` under error maps.

    Shape:
        each entry (H, W, 3) or (3, H, W) for a picture, (H, W) for a mask.
    """
    titles = list(titles) if titles is not None else [""] * len(images)
    if len(titles) != len(images):
        raise ValueError(f"got {len(images)} images but {len(titles)} titles.")
    if classes is not None:
        if colors is None:
            raise ValueError("a legend of classes= needs their colors= too.")
        key = class_key(classes, colors, void)
    pictures = [_as_picture(image, colors) for image in images]
    height, width = pictures[0].shape[:2]
    rows = 0 if key is None else math.ceil(len(key) / 6)
    fig = Figure(
        figsize=(size * len(pictures), size * height / width + 0.4 + 0.3 * rows), layout="constrained"
    )
    axes = fig.subplots(1, len(pictures), squeeze=False)[0]
    for ax, picture, title in zip(axes, pictures, titles, strict=True):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(title)
        ax.set_axis_off()
    if key is not None:
        fig.legend(handles=_handles(key), loc="outside lower center", ncol=6, frameon=False, fontsize=9)
    return fig


def plot_class_frequencies(
    counts: Array, classes: Sequence[str], colors: Colors, log: bool = False
) -> Figure:
    """Return a horizontal bar chart of each class's share of the labelled pixels, in percent.

    Shape:
        counts (num_classes,) pixel counts.
    """
    counts = _numpy(counts).astype(np.float64)
    share = 100 * counts / max(counts.sum(), 1)
    fig = Figure(figsize=(7, 0.3 * len(classes) + 1.0), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(classes))
    bars = ax.barh(y, share, color=[_rgb01(c) for c in colors], edgecolor="black", linewidth=0.5)
    ax.bar_label(bars, labels=[f"{s:.2f}%" if s < 1 else f"{s:.1f}%" for s in share], padding=3, fontsize=8)
    ax.set_yticks(y, labels=list(classes))
    ax.invert_yaxis()
    ax.set_xlabel("share of labelled pixels (%)")
    if log:
        ax.set_xscale("log")
    else:
        ax.set_xlim(0, share.max() * 1.15 + 1e-9)
    return fig


def plot_pixel_maps(
    maps: dict[str, Array], void: Array, log_from: float | None = None, cmap: str = "viridis"
) -> Figure:
    """Return per-pixel maps side by side, each with its colour bar, void pixels hatched in grey.

    ``log_from`` puts every map on one logarithmic scale from ``log_from`` to the largest value,
    except maps whose name starts with ``p_`` (probabilities, on a linear 0..1 scale). The default
    colour map, viridis, ends in yellow: no value is drawn near white, so nothing reads as void.

    Shape:
        each map (H, W) float; void (H, W) bool, True where the pixel is not scored.
    """
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.patches import Rectangle

    void = _numpy(void).astype(bool)
    arrays = {name: _numpy(values).astype(np.float64) for name, values in maps.items()}
    top = max(
        float(np.nanmax(np.where(void, np.nan, a))) for n, a in arrays.items() if not n.startswith("p_")
    )
    height, width = void.shape
    fig = Figure(figsize=(5 * len(arrays), 5 * height / width + 0.9), layout="constrained")
    axes = fig.subplots(1, len(arrays), squeeze=False)[0]
    palette = colormaps[cmap].with_extremes(bad=(0, 0, 0, 0))  # void: transparent over the hatching
    for ax, (name, values) in zip(axes, arrays.items(), strict=True):
        if name.startswith("p_"):
            norm = Normalize(0, 1)
        elif log_from is not None:
            norm = LogNorm(log_from, max(top, log_from * 10))
            values = np.maximum(
                values, log_from
            )  # a loss of exactly 0 has no logarithm: draw it at the bottom
        else:
            norm = Normalize(0, top)
        ax.add_patch(Rectangle((0, 0), 1, 1, transform=ax.transAxes, facecolor="0.75", edgecolor="0.45",
                               hatch="////", linewidth=0, zorder=0))  # fmt: skip
        shown = ax.imshow(np.where(void, np.nan, values), cmap=palette, norm=norm, interpolation="nearest")
        fig.colorbar(shown, ax=ax, shrink=0.8)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.legend(handles=[Patch(facecolor="0.75", edgecolor="0.45", hatch="////", label=VOID_LABEL)],
               loc="outside lower center", frameon=False)  # fmt: skip
    return fig


def plot_curves(history: Sequence[dict]) -> Figure:
    """Return three panels of a training history: train/val loss, val mIoU and learning rate.

    ``history`` holds one dict per epoch with ``epoch``, ``train_loss``, ``val_loss``,
    ``val_miou`` and ``lr``; epochs without validation have ``None`` there and are skipped.
    """
    fig = Figure(figsize=(13, 3.4), layout="constrained")
    ax_loss, ax_miou, ax_lr = fig.subplots(1, 3)

    def series(key):
        points = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
        return [p[0] for p in points], [p[1] for p in points]

    ax_loss.plot(*series("train_loss"), marker=".", label="train")
    ax_loss.plot(*series("val_loss"), marker="o", label="val")
    ax_loss.set_title("loss")
    ax_loss.legend()
    ax_miou.plot(*series("val_miou"), marker="o", color="tab:green")
    ax_miou.set_title("val mIoU")
    ax_lr.plot(*series("lr"), color="tab:gray")
    ax_lr.set_title("learning rate")
    for ax in (ax_loss, ax_miou, ax_lr):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    return fig


def _iou_bars(ax, iou, classes, colors) -> None:
    iou = _numpy(iou).astype(np.float64)
    y = np.arange(len(classes))
    bars = ax.barh(y, np.nan_to_num(iou, nan=0.0), color=[_rgb01(c) for c in colors],
                   edgecolor="black", linewidth=0.5)  # fmt: skip
    ax.bar_label(bars, labels=["n/a" if np.isnan(v) else f"{v:.2f}" for v in iou], padding=3, fontsize=8)
    ax.set_yticks(y, labels=list(classes))
    ax.invert_yaxis()
    ax.set_xlim(0, 1.12)
    ax.set_xlabel("IoU")
    miou = np.nanmean(iou) if not np.isnan(iou).all() else float("nan")
    if not np.isnan(miou):
        ax.axvline(miou, color="black", linestyle="--", linewidth=1)
    ax.set_title(f"mIoU {miou:.3f}" if not np.isnan(miou) else "mIoU n/a")


def plot_class_iou(iou: Array, classes: Sequence[str], colors: Colors, width: float = 7.0) -> Figure:
    """Return a horizontal bar chart of per-class IoU, NaN classes labelled "n/a", mIoU dashed.

    ``width`` is the figure's width in inches (its height follows the number of classes).

    Shape:
        iou (num_classes,) float, NaN for classes absent from both prediction and ground truth.
    """
    fig = Figure(figsize=(width, 0.3 * len(classes) + 1.0), layout="constrained")
    _iou_bars(fig.subplots(), iou, classes, colors)
    return fig


def plot_confusion(matrix: Array, classes: Sequence[str], normalize: bool = True) -> Figure:
    """Return a heat map of a confusion matrix (rows: true class, columns: predicted class).

    With ``normalize`` each row is divided by its sum, so a row reads as "where the pixels of
    this class went" and the diagonal is the class's recall; rows of classes with no pixels are
    blank (NaN). Cells are annotated when there are at most 16 classes.

    Shape:
        matrix (num_classes, num_classes) counts, ``matrix[true, pred]``.
    """
    values = _numpy(matrix).astype(np.float64)
    if normalize:
        totals = values.sum(1, keepdims=True)
        values = np.divide(values, totals, out=np.full_like(values, np.nan), where=totals > 0)
    n = len(classes)
    fig = Figure(figsize=(0.5 * n + 3, 0.5 * n + 2), layout="constrained")
    ax = fig.subplots()
    heat = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(heat, ax=ax, shrink=0.8, label="fraction of the true class" if normalize else "pixels")
    ax.set_xticks(range(n), labels=list(classes), rotation=60, ha="right")
    ax.set_yticks(range(n), labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 16:
        for t in range(n):
            for p in range(n):
                v = values[t, p]
                if not np.isnan(v) and v > 0:
                    text = f"{v:.2f}" if normalize else f"{v:.0f}"
                    ax.text(p, t, text, ha="center", va="center", fontsize=7,
                            color="white" if heat.norm(v) > 0.6 else "black")  # fmt: skip
    return fig


def to_png(picture: Figure | Array, dpi: float = 80) -> bytes:
    """Return a figure, or an RGB picture pixel for pixel, encoded as PNG (for an ``ipywidgets.Image``).

    Shape:
        picture (H, W, 3) or (3, H, W), or a ``Figure``.
    """
    buffer = io.BytesIO()
    if isinstance(picture, Figure):
        picture.savefig(buffer, format="png", dpi=dpi)
    else:  # light compression: a 960x720 frame encodes in tens of milliseconds, fast enough for sliders
        Image.fromarray(_hwc_uint8(picture)).save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


def dim_outside(image: Array, keep: Array, dim: float = 0.35) -> np.ndarray:
    """Return ``image`` with every pixel outside ``keep`` multiplied by ``dim`` (0: black, 1: unchanged).

    Shape:
        image (H, W, 3) or (3, H, W), keep (H, W) bool -> (H, W, 3) uint8.
    """
    if not 0 <= dim <= 1:
        raise ValueError(f"dim must be in [0, 1], got {dim}.")
    image = _hwc_uint8(image).astype(np.float32)
    keep = _numpy(keep).astype(bool)
    if keep.shape != image.shape[:2]:
        raise ValueError(f"keep {keep.shape} does not match the image's (H, W) {image.shape[:2]}.")
    out = image * dim
    out[keep] = image[keep]
    return out.round().astype(np.uint8)


def draw_view(
    image: Array,
    pred: Array,
    colors: Colors,
    view: str = "prediction",
    mask: Array | None = None,
    alpha: float = 0.5,
    class_id: int | None = None,
) -> np.ndarray:
    """Return one frame as a viewer shows it: the prediction, the ground truth or the errors (green
    correct, red wrong, black void: ``ERROR_KEY``) over the frame at opacity ``alpha``.

    With ``class_id`` one class stands out and every other pixel is dimmed: for the prediction and
    the ground truth, that class's pixels tinted at opacity ``alpha`` (``highlight_class``); for the
    errors, the pixels that count for the class's IoU (where it is predicted or true), errors kept.

    Shape:
        image (H, W, 3) or (3, H, W), pred and mask (H, W) int -> (H, W, 3) uint8.
    """
    if view != "prediction" and mask is None:
        raise ValueError(f"the {view!r} view needs the ground-truth mask.")
    if view not in ("prediction", "ground truth", "errors"):
        raise ValueError(f"view must be 'prediction', 'ground truth' or 'errors', got {view!r}.")
    if view == "errors":
        drawn = overlay(image, error_map(pred, mask), alpha)
        if class_id is None:
            return drawn
        counted = (torch.as_tensor(pred) == class_id) | (torch.as_tensor(mask) == class_id)
        return dim_outside(drawn, counted)
    ids = pred if view == "prediction" else mask
    if class_id is not None:
        return highlight_class(image, ids, class_id, alpha=alpha)
    return overlay(image, colorize(ids, colors), alpha)


def plot_flicker(per_step: dict[str, Array], fps: float) -> Figure:
    """Return a line chart of the share of pixels that change class at each step of a clip, one line
    per series (e.g. the labels, the model, the smoothed model), against time in seconds.

    Shape:
        each series (steps,) float in [0, 1], steps = frames - 1.
    """
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax = fig.subplots()
    for name, values in per_step.items():
        values = 100 * _numpy(values).astype(np.float64)
        ax.plot(
            (np.arange(len(values)) + 1) / fps, values, marker="." if len(values) < 40 else None, label=name
        )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("pixels that change class (%)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def plot_class_flicker(per_class: dict[str, Array], classes: Sequence[str]) -> Figure:
    """Return grouped horizontal bars of each class's flicker (1 - IoU of its region between consecutive
    frames), one bar per series; classes in no frame are labelled "n/a".

    Shape:
        each series (num_classes,) float in [0, 1], NaN for an absent class.
    """
    fig = Figure(figsize=(7, 0.45 * len(classes) + 1.0), layout="constrained")
    ax = fig.subplots()
    y, height = np.arange(len(classes)), 0.8 / max(len(per_class), 1)
    for k, (name, values) in enumerate(per_class.items()):
        values = _numpy(values).astype(np.float64)
        bars = ax.barh(y + (k - (len(per_class) - 1) / 2) * height, np.nan_to_num(values), height, label=name)
        ax.bar_label(
            bars, labels=["n/a" if np.isnan(v) else f"{v:.2f}" for v in values], padding=2, fontsize=7
        )
    ax.set_yticks(y, labels=list(classes))
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("flicker: share of the class's pixels that change class at the next frame")
    ax.legend(loc="lower right")
    return fig


def plot_feature_maps(image: Array, features: Sequence[torch.Tensor], strides: Sequence[int]) -> Figure:
    """Draw a frame beside how strongly an encoder responds at each stride: the mean absolute
    activation over the channels of each feature map, brighter where the encoder's features fire.

    Shape:
        image (H, W, 3) uint8; each feature (1, C, H / stride, W / stride).
    """
    fig = Figure(figsize=(3.0 * (len(features) + 1), 2.6), layout="constrained")
    axes = fig.subplots(1, len(features) + 1)
    axes[0].imshow(_hwc_uint8(image))
    axes[0].set_title("frame")
    for ax, feature, stride in zip(axes[1:], features, strides, strict=True):
        energy = _numpy(feature[0].float().abs().mean(0))  # (h, w)
        ax.imshow(energy, cmap="magma")
        ax.set_title(f"stride {stride}: {feature.shape[1]} ch, {energy.shape[0]}x{energy.shape[1]}")
    for ax in axes:
        ax.set_axis_off()
    return fig
