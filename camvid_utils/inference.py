"""Prediction on single frames with a loaded model, at the frame's own resolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .checkpoint import LoadedModel
from .transforms import EvalPreset


@torch.no_grad()
def predict_logits(loaded: LoadedModel, image: torch.Tensor) -> torch.Tensor:
    """Return class logits for a uint8 frame, resized back to the frame's height and width.

    The frame is resized to the size the model was trained at and normalised as in training.

    Shape:
        image (3, H, W) uint8 -> logits (C, H, W) float32.
    """
    if image.ndim != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
        raise ValueError(f"expected a (3, H, W) uint8 frame, got {tuple(image.shape)} {image.dtype}.")
    device = next(loaded.model.parameters()).device
    x = EvalPreset(loaded.image_size, mean=loaded.mean, std=loaded.std)(image)
    logits = loaded.model(x[None].to(device)).float()  # (1, C, h, w)
    return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)[0]


def predict(loaded: LoadedModel, image: torch.Tensor) -> torch.Tensor:
    """Return the predicted class id of every pixel of a uint8 frame.

    Shape:
        image (3, H, W) uint8 -> pred (H, W) int64.
    """
    return predict_logits(loaded, image).argmax(0).cpu()
