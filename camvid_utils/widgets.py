"""Interactive viewers for the notebooks: ipywidgets controls wired to ``camvid_utils.viz``.

Only wiring lives here; every picture comes from a ``viz`` function, which is what the tests
check. Written against the API shared by ipywidgets 7.6+ (Google Colab) and 8.

Each viewer returns its widget container with the redraw function attached as ``.update``, so that
it can be driven without a browser: ``viewer.update()`` redraws with the controls' current values
and returns the RGB picture it drew. Every redraw prints one line describing what is shown; while
a new frame waits for the model, that line says so and the controls are disabled.

A page saved without a kernel (the course website) cannot run the Python redraws. With
``CAMVID_STATIC_WIDGETS=1`` in the environment, which the site build sets, each viewer returns a
pre-rendered copy instead: its pictures for every frame drawn once, in a ``widgets.Stack`` whose page
the frame slider (and ``Play``) selects in the browser, plus one line saying what needs a kernel.
"""

from __future__ import annotations

import html
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import ipywidgets as widgets
import numpy as np
import torch
from PIL import Image

from . import viz
from .checkpoint import LoadedModel, check_classes
from .data import IGNORE_INDEX, CamVid
from .inference import predict, top_classes
from .metrics import ConfusionMatrix

VIEWS = ("prediction", "ground truth", "errors")
NO_CLASS = -1
KEY_COLUMNS = 4  # entries per row of a legend under a picture


def _image(width: str, kind: str = "png") -> widgets.Image:
    """Return an empty image widget ``width`` wide (a CSS length) that keeps its aspect ratio."""
    return widgets.Image(format=kind, layout=widgets.Layout(width=width, height="auto", object_fit="contain"))


def _key_image() -> widgets.Image:
    """Return an empty image widget for a legend, shown at its own size (narrowed only to fit): not
    stretched across the box's width, which would scale its text up to twice the notebook's."""
    layout = widgets.Layout(max_width="100%", height="auto", align_self="flex-start")
    return widgets.Image(format="png", layout=layout)


def _row(*children) -> widgets.HBox:
    """Return a row of widgets, each at its own height (a flex row would stretch the shorter ones)."""
    return widgets.HBox(list(children), layout=widgets.Layout(align_items="flex-start"))


def _show(out: widgets.Output, line: str) -> None:
    """Replace the text in ``out`` with one line (kept as ``out.line`` for a pre-rendered copy)."""
    out.line = line
    out.clear_output(wait=True)
    with out:
        print(line)


@contextmanager
def _busy(out: widgets.Output, line: str, controls: list[widgets.Widget]) -> Iterator[None]:
    """Show ``line`` in ``out`` and disable ``controls`` until the block ends.

    A prediction takes about a second on a CPU: without this the viewer looks frozen, and moves
    made meanwhile would queue up behind it.
    """
    _show(out, line)
    for control in controls:
        control.disabled = True
    try:
        yield
    finally:
        for control in controls:
            control.disabled = False


@lru_cache(maxsize=8)
def _key_png(key: tuple) -> bytes:
    """Return a legend of (label, colour) entries as PNG (the same few legends are drawn again and again),
    its text at 96 dpi as large as a browser's 10-point text."""
    return viz.to_png(viz.key_figure(key, ncols=KEY_COLUMNS), dpi=96)


def _legend(classes, colors, view: str = "prediction", void: bool = True) -> bytes:
    """Return the legend of what ``view`` shows: the classes and void, or the error colours (void
    left out of either when the labels cannot hold it)."""
    key = viz.ERROR_KEY if view == "errors" else viz.class_key(classes, colors)
    key = key if void else [(label, color) for label, color in key if label != viz.VOID_LABEL]
    return _key_png(tuple((label, tuple(int(v) for v in color)) for label, color in key))


def _frame_slider(dataset: CamVid, start: int) -> widgets.IntSlider:
    if not 0 <= start < len(dataset):
        raise IndexError(f"start={start} is not a frame of this split (0..{len(dataset) - 1}).")
    # Decoding a full-size frame takes tens of milliseconds: redraw on release, not on every step.
    return widgets.IntSlider(
        value=start, min=0, max=len(dataset) - 1, description="frame", continuous_update=False
    )


def frame_browser(dataset: CamVid, start: int = 0) -> widgets.VBox:
    """Return a slider over the dataset's frames showing each frame beside its colourised label."""
    slider = _frame_slider(dataset, start)
    out = widgets.Output()
    frame_view, label_view = _image("49%"), _image("49%")
    key = _key_image()
    key.value = _legend(dataset.classes, dataset.colors, void=dataset.has_void)

    def update(change=None) -> np.ndarray:
        index = slider.value
        image, mask = dataset.load_frame(index)
        label = viz.colorize(mask, dataset.colors)
        frame_view.value, label_view.value = viz.to_png(image), viz.to_png(label)
        top = ", ".join(f"{name} {share:.0%}" for name, share in top_classes(mask, dataset.classes))
        void = (mask == IGNORE_INDEX).float().mean().item()
        _show(out, f"frame {index}: {dataset.frames[index].stem}  {top}  void {void:.0%}")
        return label

    slider.observe(update, names="value")
    box = widgets.VBox([slider, out, _row(frame_view, label_view), key])
    box.update = update
    update()
    if static_widgets():
        return prerendered(box, slider, out, "Drag the slider to browse the frames.")
    return box


def prediction_viewer(
    loaded: LoadedModel, dataset: CamVid, start: int = 0, opacity: float = 0.5
) -> widgets.VBox:
    """Return an interactive viewer of a model's predictions on the dataset's frames.

    Controls: ``frame`` (which frame), ``view`` (the prediction, the ground truth, or the errors:
    green correct, red wrong, black void), ``opacity`` of the coloured layer over the frame, and
    ``class``, which dims every pixel outside one class (for ``errors``: outside the pixels that
    count for that class's IoU, where it is predicted or true). Beside the picture: the frame's own
    per-class IoU. Each frame is predicted once and cached, so only a new frame waits for the model;
    meanwhile the line under the controls reads ``predicting frame N: <stem> …`` and the controls
    are disabled. The viewer opens on frame ``start``.
    """
    check_classes(loaded.classes, dataset.classes, "the loaded model", dataset.root)
    frame = _frame_slider(dataset, start)
    view = widgets.ToggleButtons(options=list(VIEWS), value="prediction", description="view")
    alpha = widgets.FloatSlider(value=opacity, min=0.0, max=1.0, step=0.05, description="opacity",
                                continuous_update=False, readout_format=".2f")  # fmt: skip
    picked = widgets.Dropdown(
        options=[("none", NO_CLASS)] + [(name, i) for i, name in enumerate(dataset.classes)],
        value=NO_CLASS,
        description="class",
    )
    out = widgets.Output()
    picture, iou_chart, key = _image("60%"), _image("38%"), _key_image()
    inputs = [frame, view, alpha, picked]

    @lru_cache(maxsize=16)
    def predicted(index: int):
        """Return the frame, its mask, the prediction (both uint8, to keep the cache small), the
        frame's per-class IoU, and the IoU bar chart as PNG."""
        with _busy(out, f"predicting frame {index}: {dataset.frames[index].stem} …", inputs):
            image, mask = dataset.load_frame(index)
            pred = predict(loaded, image)
            cm = ConfusionMatrix(dataset.num_classes)
            cm.update(pred, mask)
            chart = viz.to_png(viz.plot_class_iou(cm.iou(), dataset.classes, dataset.colors, width=4.5))
        return image, mask.to(torch.uint8), pred.to(torch.uint8), cm.iou(), chart

    def update(change=None) -> np.ndarray:
        index, shown, class_id = frame.value, view.value, picked.value
        image, mask, pred, iou, chart = predicted(index)
        highlighted = None if class_id == NO_CLASS else class_id
        drawn = viz.draw_view(
            image, pred.long(), dataset.colors, shown, mask.long(), alpha.value, highlighted
        )
        picture.value, iou_chart.value = viz.to_png(drawn), chart
        key.value = _legend(dataset.classes, dataset.colors, shown, void=dataset.has_void)
        stem = dataset.frames[index].stem
        class_name = "none" if class_id == NO_CLASS else dataset.classes[class_id]
        _show(
            out,
            f"frame {index}: {stem}  view={shown}  opacity={alpha.value:.2f}  "
            f"class={class_name}  frame mIoU {iou.nanmean().item():.3f}",
        )
        return drawn

    for control in inputs:
        control.observe(update, names="value")
    controls = widgets.VBox([widgets.HBox([frame, alpha, picked]), view])
    box = widgets.VBox([controls, out, _row(picture, iou_chart), key])
    box.update, box.predicted = update, predicted
    update()
    if static_widgets():
        return prerendered(
            box,
            frame,
            out,
            "The slider picks a frame; the view, opacity and class controls need a running kernel.",
        )
    return box


def clip_player(
    images: list[torch.Tensor],
    preds: list[torch.Tensor],
    colors,
    masks: list[torch.Tensor] | None = None,
    names: list[str] | None = None,
    fps: float = 15.0,
    opacity: float = 0.5,
    classes: list[str] | None = None,
) -> widgets.VBox:
    """Return a player of a predicted clip: an ``ipywidgets.Play`` linked to a frame slider.

    Controls: the play button (``fps`` frames per second), ``frame``, ``view`` (prediction, ground
    truth and errors when ``masks`` are given) and ``opacity``; under the picture, the legend of the
    view: ``classes`` (names for ``colors``) and void, or the error colours. The predictions are
    passed in, computed once.

    With ipywidgets 8 every frame of the view is drawn into a ``widgets.Stack`` (the current frame
    first) and the Play control, the slider and the Stack are linked in the browser, so a play-through
    shows every frame at the clip's rate without asking the kernel; changing the view or the opacity
    redraws the whole clip. ipywidgets 7 (Google Colab's) has no ``Stack``: there the slider asks the
    kernel for each frame's picture (cached), and a picture that has not reached the browser in time
    is skipped: the slider visits every frame, the picture may not. To see every frame at the clip's
    rate there, write the clip with ``video.write_video`` (a GIF plays in the browser).

    Shape:
        images (3, H, W) uint8, preds and masks (H, W) int, one per frame of the clip.
    """
    if len(preds) != len(images) or (masks is not None and len(masks) != len(images)) or not images:
        raise ValueError("pass one prediction (and one mask, if any) per frame of a non-empty clip.")
    names = names or [f"{i:03d}" for i in range(len(images))]
    last = len(images) - 1
    play = widgets.Play(
        value=0, min=0, max=last, step=1, interval=max(round(1000 / fps), 10), description="play"
    )
    frame = widgets.IntSlider(value=0, min=0, max=last, description="frame", continuous_update=False)
    links = [widgets.jslink((play, "value"), (frame, "value"))]
    views = list(VIEWS) if masks is not None else ["prediction"]
    view = widgets.ToggleButtons(options=views, value="prediction", description="view")
    alpha = widgets.FloatSlider(value=opacity, min=0.0, max=1.0, step=0.05, description="opacity",
                                continuous_update=False, readout_format=".2f")  # fmt: skip
    key = _key_image()
    classes = [f"class {i}" for i in range(len(colors))] if classes is None else classes

    stacked = hasattr(widgets, "Stack")

    def draw(index: int) -> np.ndarray:
        mask = None if masks is None else masks[index]
        return viz.draw_view(images[index], preds[index], colors, view.value, mask, round(alpha.value, 2))

    @lru_cache(maxsize=4 * len(images))
    def encoded(index: int, shown: str, opacity: float) -> bytes:
        # a whole clip of pages travels to the browser at each change of view: JPEG, a tenth of PNG's size
        return _jpeg(draw(index)) if stacked else viz.to_png(draw(index))

    def caption(index: int) -> str:
        return f"frame {index}/{last}: {names[index]}  {index / fps:.2f} s  view={view.value}  " \
               f"opacity={alpha.value:.2f}"  # fmt: skip

    if stacked:
        pages = [widgets.VBox([widgets.HTML(), _image("70%", "jpeg")]) for _ in images]
        stack = widgets.Stack(pages, selected_index=0)
        links.append(widgets.jslink((frame, "value"), (stack, "selected_index")))

        def draw_page(index: int) -> None:
            label, picture = pages[index].children
            label.value = f"<code>{html.escape(caption(index))}</code>"
            picture.value = encoded(index, view.value, round(alpha.value, 2))

        def update(change=None) -> np.ndarray:
            if change is None or change["owner"] is not frame:  # a new view: every page, this one first
                key.value = _legend(classes, colors, view.value)
                for index in [frame.value, *(i for i in range(len(images)) if i != frame.value)]:
                    draw_page(index)
            return draw(frame.value)

        shown_area = stack
    else:
        out, picture = widgets.Output(), _image("70%")

        def update(change=None) -> np.ndarray:
            picture.value = encoded(frame.value, view.value, round(alpha.value, 2))
            key.value = _legend(classes, colors, view.value)
            _show(out, caption(frame.value))
            return draw(frame.value)

        shown_area = widgets.VBox([out, picture])

    for control in (frame, view, alpha):
        control.observe(update, names="value")
    box = widgets.VBox([widgets.HBox([play, frame, alpha]), view, shown_area, key])
    box.update, box.play, box.frame, box.links = update, play, frame, links
    update()
    if static_widgets() and stacked:
        return _prerendered_player(box, stack, key)
    return box


def _prerendered_player(box: widgets.VBox, stack: widgets.Stack, key: widgets.Image) -> widgets.VBox:
    """Return the pages of a clip player's ``stack`` with its Play control, slider and legend, the
    view and opacity controls (which need a kernel) left out and closed."""
    play, frame = box.play, box.frame
    for page in stack.children:
        label, picture = page.children
        page.children = (label, _compact(picture))
        picture.close()
    line = widgets.HTML(
        "<i>Pre-rendered for this page. Press Play or drag the slider; the view and opacity controls "
        "need a running kernel. Run the notebook for the live viewer.</i>"
    )
    controls = widgets.HBox([play, frame])
    static = widgets.VBox([controls, line, stack, key])
    static.stack, static.slider, static.play, static.frame = stack, frame, play, frame
    kept = {play, frame, stack, key, *box.links}
    for widget in box.children[0].children + box.children[1:]:
        if widget not in kept:
            _close(widget)
    box.children[0].close()
    box.close()
    return static


STATIC_WIDGETS = "CAMVID_STATIC_WIDGETS"
STATIC_MAX_FRAMES = 24  # a page holds every pre-rendered picture: keep it to a few megabytes
STATIC_WIDTH = 640  # pixels: pictures are shown at most about this wide on a page


def static_widgets() -> bool:
    """Return True when viewers are saved into a page without a kernel (``CAMVID_STATIC_WIDGETS=1``)."""
    value = os.environ.get(STATIC_WIDGETS, "0").strip()
    if value not in ("0", "1", ""):
        raise ValueError(f"{STATIC_WIDGETS}={value!r}: set it to 1 (pre-rendered viewers) or 0 (live ones).")
    return value == "1"


def _pictures(widget: widgets.Widget) -> widgets.Widget | None:
    """Return a copy of the pictures in ``widget``, laid out as there (rows stay rows, a legend stays
    under its picture), without the controls and text; None if it holds no picture."""
    if isinstance(widget, widgets.Image):
        return _compact(widget)
    kept = [copy for copy in map(_pictures, getattr(widget, "children", ())) if copy is not None]
    if not kept:
        return None
    box = widgets.HBox if isinstance(widget, widgets.HBox) else widgets.VBox
    return box(kept, layout=widget.layout)


def _jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """Return an RGB picture encoded as JPEG.

    Shape:
        rgb (H, W, 3) uint8.
    """
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="jpeg", quality=quality)
    return buffer.getvalue()


def _compact(image: widgets.Image) -> widgets.Image:
    """Return a copy of ``image`` small enough to store many of in a page: frames as JPEG at most
    ``STATIC_WIDTH`` wide, charts (PNG with few colours, already small) unchanged."""
    picture = Image.open(io.BytesIO(image.value))
    value, kind = image.value, image.format
    if picture.width > STATIC_WIDTH or len(value) > 200_000:
        picture = picture.convert("RGB")
        picture.thumbnail((STATIC_WIDTH, STATIC_WIDTH * picture.height // picture.width))
        buffer = io.BytesIO()
        picture.save(buffer, format="jpeg", quality=88)
        value, kind = buffer.getvalue(), "jpeg"
    return widgets.Image(value=value, format=kind, layout=image.layout)


def prerendered(
    box: widgets.VBox, frame: widgets.IntSlider, out: widgets.Output, note: str, fps: float | None = None
) -> widgets.VBox:
    """Return a copy of a live viewer that works without a kernel: every frame drawn once into a
    ``widgets.Stack`` whose shown page the frame slider (and, with ``fps``, a ``Play``) selects
    through a browser-side link. At most ``STATIC_MAX_FRAMES`` frames; ``note`` says what needs a
    kernel. Needs ipywidgets 8 (``Stack``); on ipywidgets 7 the live viewer is returned unchanged.
    """
    if not hasattr(widgets, "Stack"):
        return box
    count = min(frame.max + 1, STATIC_MAX_FRAMES)
    pages = []
    for index in range(count):
        frame.value = index  # redraws the live viewer
        caption = widgets.HTML(f"<code>{html.escape(out.line)}</code>")
        pages.append(widgets.VBox([caption, _pictures(box)]))
    stack = widgets.Stack(pages, selected_index=0)
    slider = widgets.IntSlider(value=0, min=0, max=count - 1, description="frame")
    widgets.jslink((slider, "value"), (stack, "selected_index"))
    controls = [slider]
    if fps is not None:
        play = widgets.Play(
            value=0, min=0, max=count - 1, interval=max(round(1000 / fps), 10), description="play"
        )
        widgets.jslink((play, "value"), (slider, "value"))
        controls.insert(0, play)
    shown = "" if count == frame.max + 1 else f" (the first {count} of {frame.max + 1} frames)"
    line = widgets.HTML(
        f"<i>Pre-rendered for this page{shown}. {note} Run the notebook for the live viewer.</i>"
    )
    static = widgets.VBox([widgets.HBox(controls), line, stack])
    static.stack, static.slider = stack, slider
    _close(box)  # the live viewer is never shown: keep its pictures out of the saved page
    return static


def _close(widget: widgets.Widget) -> None:
    """Close ``widget`` and everything inside it (a closed widget's state is not saved)."""
    for child in [*getattr(widget, "children", ()), *getattr(widget, "links", ())]:
        _close(child)
    widget.close()
