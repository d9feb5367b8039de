"""Prediction on frames with a loaded model, at the frames' own resolution, with optional TTA.

Test-time augmentation (``tta="flip"``) runs the model on each frame and on its mirror image, flips
the second answer back, and averages the two softmax outputs: an average of two views that the
model was trained to treat alike (training flips at random), which costs twice the compute.
``tta="multiscale"`` does the same at each scale of ``MULTISCALE`` (the frame resized by 0.75, 1 and
1.25 times the size the model was trained at, within the 0.75-1.5 range the presets train on): six
views, each view's logits resized to the label's (or the frame's) resolution before its softmax, the
six softmax outputs averaged there. It costs about 2 x (0.75^2 + 1 + 1.25^2) = 6.25 times the plain
compute.

What ``predict`` writes for an image also lives here: its output names (``prediction_names``) and
its two files, ``<name>_mask.png`` and ``<name>_overlay.png`` (``write_prediction``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .checkpoint import LoadedModel
from .data import IMAGE_SUFFIXES, CamVidError
from .transforms import EvalPreset
from .viz import colorize, overlay

TTA_MODES = ("none", "flip", "multiscale")
MULTISCALE = (0.75, 1.0, 1.25)  # the scales of tta="multiscale", times the size the model ran at


def check_tta(tta: str | None) -> str | None:
    """Return ``None`` (no TTA) or the mode for ``tta`` in ``None`` and ``TTA_MODES``; else raise."""
    if tta not in (None, *TTA_MODES):
        raise ValueError(f"tta must be one of {TTA_MODES} (or None), got {tta!r}.")
    return None if tta in (None, "none") else tta


def tta_logits(
    model: nn.Module,
    x: torch.Tensor,
    tta: str | None = None,
    *,
    size: tuple[int, int] | None = None,
    scales: tuple[float, ...] = MULTISCALE,
) -> torch.Tensor:
    """Return the model's class scores for a normalised batch, averaged over the views of ``tta``.

    With TTA the scores are the log of the mean of the views' softmax outputs: log-probabilities are
    logits too (their softmax gives back the averaged probabilities), so argmax, resizing and losses
    treat them as any logits. They are clamped away from log(0) so that bilinear resizing stays finite.
    ``tta="multiscale"`` runs the model at each of ``scales`` times ``x``'s size, with and without
    mirroring, and averages at ``size`` (the label's resolution; default ``x``'s size).

    Shape:
        x (B, 3, h, w) -> (B, C, h, w), or (B, C, *size) with multiscale; float32 with TTA, the
        model's dtype without.
    """
    mode = check_tta(tta)
    if mode is None:
        return model(x)
    if mode == "flip":
        probs = model(x).float().softmax(1) + model(x.flip(-1)).float().softmax(1).flip(-1)
        return (probs / 2).clamp_min(torch.finfo(torch.float32).tiny).log()
    return _multiscale_logits(model, x, tuple(size or x.shape[-2:]), scales)


def _multiscale_logits(model: nn.Module, x: torch.Tensor, size: tuple[int, int], scales) -> torch.Tensor:
    h, w = x.shape[-2:]
    probs = None
    for scale in scales:
        shape = (max(1, round(h * scale)), max(1, round(w * scale)))
        xs = x if shape == (h, w) else F.interpolate(x, size=shape, mode="bilinear", antialias=scale < 1)
        for mirrored in (False, True):
            logits = model(xs.flip(-1) if mirrored else xs).float()  # (B, C, *shape)
            logits = logits.flip(-1) if mirrored else logits
            if tuple(logits.shape[-2:]) != size:
                logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
            p = logits.softmax(1)  # (B, C, *size)
            probs = p if probs is None else probs + p
    return (probs / (2 * len(scales))).clamp_min(torch.finfo(torch.float32).tiny).log()


@torch.no_grad()
def predict_batch_logits(loaded: LoadedModel, images: torch.Tensor, tta: str | None = None) -> torch.Tensor:
    """Return class logits for a batch of uint8 frames of one size, resized back to that size.

    The frames are resized to the size the model was trained at and normalised as in training.

    Shape:
        images (B, 3, H, W) uint8 -> logits (B, C, H, W) float32.
    """
    if images.ndim != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
        raise ValueError(f"expected (B, 3, H, W) uint8 frames, got {tuple(images.shape)} {images.dtype}.")
    device = next(loaded.model.parameters()).device
    x = EvalPreset(loaded.image_size, mean=loaded.mean, std=loaded.std)(images.to(device))
    logits = tta_logits(loaded.model, x, tta, size=tuple(images.shape[-2:])).float()  # (B, C, h, w)
    if logits.shape[-2:] == images.shape[-2:]:
        return logits
    return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)


def predict_logits(loaded: LoadedModel, image: torch.Tensor, tta: str | None = None) -> torch.Tensor:
    """Return class logits for a uint8 frame, resized back to the frame's height and width.

    The frame is resized to the size the model was trained at and normalised as in training.

    Shape:
        image (3, H, W) uint8 -> logits (C, H, W) float32.
    """
    if image.ndim != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
        raise ValueError(f"expected a (3, H, W) uint8 frame, got {tuple(image.shape)} {image.dtype}.")
    return predict_batch_logits(loaded, image[None], tta)[0]


def predict(loaded: LoadedModel, image: torch.Tensor, tta: str | None = None) -> torch.Tensor:
    """Return the predicted class id of every pixel of a uint8 frame.

    Shape:
        image (3, H, W) uint8 -> pred (H, W) int64.
    """
    return predict_logits(loaded, image, tta).argmax(0).cpu()


def predict_batch(loaded: LoadedModel, images: torch.Tensor, tta: str | None = None) -> torch.Tensor:
    """Return the predicted class ids of a batch of uint8 frames of one size.

    Shape:
        images (B, 3, H, W) uint8 -> pred (B, H, W) int64.
    """
    return predict_batch_logits(loaded, images, tta).argmax(1).cpu()


def top_classes(ids: torch.Tensor, classes, k: int = 3) -> list[tuple[str, float]]:
    """Return the ``k`` classes with the most pixels in ``ids``, largest first, each with its share.

    A share is of all the pixels: void (255) counts in the total but is never listed.

    Shape:
        ids (H, W) int: a prediction or a mask.
    """
    shares = torch.bincount(ids.flatten().long(), minlength=len(classes))[: len(classes)] / ids.numel()
    return [(classes[i], shares[i].item()) for i in shares.argsort(descending=True)[:k].tolist()]


OUTPUTS = ("_mask", "_overlay")  # what predict writes: <name>_mask.png, <name>_overlay.png


def prediction_names(inputs: list[str], out: str | os.PathLike) -> list[tuple[Path, Path]]:
    """Return ``(image, output name)`` pairs, one distinct output name per image.

    Folders are searched recursively (sorted). Images below ``out`` are skipped when ``out`` is inside
    the folder; when ``out`` is the folder itself (or above it), only predict's own outputs are. Each
    name is the image's path below the folder all inputs share, without its suffix, so sub-folders are
    mirrored; images of one folder with the same stem keep their suffix in the name (``x_jpg``), and a
    name that would still be taken (letter case aside) gets a number (``x_png_2``).
    """
    out = Path(out).resolve()
    found: list[tuple[Path, Path]] = []  # (image, the folder its name is taken below)
    for item in map(Path, inputs):
        if item.is_dir():
            around = item.resolve() == out or out in item.resolve().parents  # out is the folder or above it
            images = sorted(
                p
                for p in item.rglob("*")
                if p.suffix.lower() in IMAGE_SUFFIXES
                and p.is_file()
                and not (out in p.resolve().parents and (not around or p.stem.endswith(OUTPUTS)))
            )
            if not images:
                raise CamVidError(f"{item} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
            found += [(p, item) for p in images]
        elif item.is_file():
            found.append((item, item.parent))
        else:
            raise CamVidError(f"{item} does not exist; pass image files or folders of images.")
    common = Path(os.path.commonpath([str(folder.resolve()) for _, folder in found]))
    unique = list({p.resolve(): p for p, _ in found}.items())  # an image given twice is done once
    stems = [path.relative_to(common).with_suffix("") for path, _ in unique]
    pairs, taken = [], set()
    for (path, given), stem in zip(unique, stems, strict=True):
        if stems.count(stem) > 1:
            stem = stem.with_name(f"{stem.name}_{path.suffix.lstrip('.').lower()}")
        name, number = stem, 1
        while str(name).lower() in taken:  # x.png beside x.PNG, or x.jpg and x.png beside x_jpg.png
            number += 1
            name = stem.with_name(f"{stem.name}_{number}")
        taken.add(str(name).lower())  # case-insensitive: some file systems are
        pairs.append((given, name))
    return pairs


def output_paths(out: str | os.PathLike, name: str | os.PathLike) -> tuple[Path, Path]:
    """Return the mask and overlay files that ``write_prediction`` writes for ``name`` in ``out``."""
    mask_path, overlay_path = (Path(out) / f"{name}{suffix}.png" for suffix in OUTPUTS)
    return mask_path, overlay_path


def write_prediction(
    out: str | os.PathLike, name: str | os.PathLike, image, pred: torch.Tensor, colors, alpha: float = 0.5
) -> np.ndarray:
    """Write a frame's colourised prediction and its overlay at opacity ``alpha`` into ``out``, as
    ``output_paths`` names them (making ``name``'s folders); return the overlay.

    Shape:
        image (H, W, 3) or (3, H, W) uint8, pred (H, W) int -> overlay (H, W, 3) uint8.
    """
    mask_path, overlay_path = output_paths(out, name)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    mask_rgb = colorize(pred, colors)
    drawn = overlay(image, mask_rgb, alpha)
    Image.fromarray(mask_rgb).save(mask_path)
    Image.fromarray(drawn).save(overlay_path)
    return drawn
