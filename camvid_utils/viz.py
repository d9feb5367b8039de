"""Drawing: pure functions from tensors to RGB arrays and matplotlib figures.

Nothing here knows about widgets; the notebooks' sliders only call these functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .data import IGNORE_INDEX

VOID_COLOR = (0, 0, 0)


def colorize(mask, colors: Sequence[Sequence[int]], void_color=VOID_COLOR) -> np.ndarray:
    """Return an RGB picture of a class-id mask; void (255) is drawn in ``void_color``.

    Shape:
        mask (H, W) int -> (H, W, 3) uint8.
    """
    mask = torch.as_tensor(mask).cpu().numpy()
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(colors)] = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    palette[IGNORE_INDEX] = void_color
    return palette[mask.astype(np.int64).clip(0, 255)]


def _hwc_uint8(image) -> np.ndarray:
    """Accept (3, H, W) float in [0, 1] or uint8 tensors, or (H, W, 3) arrays; return (H, W, 3) uint8."""
    array = torch.as_tensor(image).detach().cpu()
    if array.ndim == 3 and array.shape[0] == 3 and array.shape[-1] != 3:
        array = array.permute(1, 2, 0)
    if array.is_floating_point():
        array = (array.clamp(0, 1) * 255).round()
    return array.to(torch.uint8).numpy()


def overlay(image, mask_rgb: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Return ``image`` blended with a colourised mask at opacity ``alpha`` (0: image, 1: mask).

    Shape:
        image (H, W, 3) or (3, H, W), mask_rgb (H, W, 3) uint8 -> (H, W, 3) uint8.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    image = _hwc_uint8(image).astype(np.float32)
    blended = (1 - alpha) * image + alpha * np.asarray(mask_rgb, dtype=np.float32)
    return blended.round().astype(np.uint8)
