"""Prediction on frames with a loaded model, at the frames' own resolution, with optional flip TTA.

Test-time augmentation (``tta="flip"``) runs the model on each frame and on its mirror image, flips
the second answer back, and averages the two softmax outputs: an average of two views that the
model was trained to treat alike (training flips at random), which costs twice the compute.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import LoadedModel
from .transforms import EvalPreset

TTA_MODES = ("none", "flip")


def check_tta(tta: str | None) -> str | None:
    """Return ``None`` (no TTA) or ``"flip"`` for ``tta`` in ``None``, ``"none"``, ``"flip"``; else raise."""
    if tta not in (None, *TTA_MODES):
        raise ValueError(f"tta must be one of {TTA_MODES} (or None), got {tta!r}.")
    return None if tta in (None, "none") else tta


def tta_logits(model: nn.Module, x: torch.Tensor, tta: str | None = None) -> torch.Tensor:
    """Return the model's class scores for a normalised batch, averaged over a mirror with ``tta="flip"``.

    With flip TTA the scores are the log of the mean of the two softmax outputs: log-probabilities are
    logits too (their softmax gives back the averaged probabilities), so argmax, resizing and losses
    treat them as any logits. They are clamped away from log(0) so that bilinear resizing stays finite.

    Shape:
        x (B, 3, h, w) -> (B, C, h, w); float32 with flip TTA, the model's dtype without.
    """
    if check_tta(tta) is None:
        return model(x)
    probs = model(x).float().softmax(1) + model(x.flip(-1)).float().softmax(1).flip(-1)
    return (probs / 2).clamp_min(torch.finfo(torch.float32).tiny).log()


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
    logits = tta_logits(loaded.model, x, tta).float()  # (B, C, h, w)
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
