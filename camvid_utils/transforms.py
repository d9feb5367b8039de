"""Joint image/mask transforms on ``torchvision.transforms.v2``.

The dataset hands a uint8 ``tv_tensors.Image`` and an int64 ``tv_tensors.Mask`` to the transform.
Geometric transforms move both together; v2 resizes a ``Mask`` with nearest neighbour, so class ids
are never blended into ids that mean something else (bilinear would turn a Road/Sky edge into
whatever class id lies between them). Crop padding of the mask is void (255), never a class.

Normalisation uses the ImageNet statistics (mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225), the
usual convention that keeps the inputs near zero mean and unit variance; the values travel in every
checkpoint so that inference normalises exactly as training did.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from .data import IGNORE_INDEX

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Augmentation:
    """The training augmentation, one description for both data paths.

    The frame is resized so that its short side is ``min(size)`` times a random factor drawn from
    ``scale`` (the evaluation preset resizes to ``size``, so 1.0 is the scale the model is scored
    at), then a random ``crop`` (default: ``size``) is cut out; crops past the border are padded
    with void. Then a horizontal flip with probability ``hflip``, brightness, contrast and
    saturation factors in ``[1 - jitter, 1 + jitter]``, and normalisation with ``mean`` and ``std``.
    ``train_preset`` runs it per sample on the CPU, ``device_augment.DeviceAugment`` per batch on
    the training device.
    """

    size: tuple[int, int]
    crop: tuple[int, int] | None = None
    scale: tuple[float, float] = (1.0, 1.5)
    hflip: float = 0.5
    jitter: float = 0.2
    mean: tuple[float, ...] = MEAN
    std: tuple[float, ...] = STD

    @property
    def crop_size(self) -> tuple[int, int]:
        """The (height, width) of what comes out: ``crop``, or ``size`` without one."""
        return tuple(self.crop or self.size)

    @property
    def short_range(self) -> tuple[int, int]:
        """The smallest and largest short side a frame is resized to, both included."""
        short = min(self.size)
        return round(short * self.scale[0]), round(short * self.scale[1])


def train_preset(augmentation: Augmentation | tuple[int, int], **settings) -> v2.Compose:
    """Return the training pipeline of an ``Augmentation``: resize, random crop, flip, jitter, normalise.

    ``train_preset(size, crop=..., scale=...)`` is ``train_preset(Augmentation(size, crop=..., ...))``.
    Training on crops of the evaluation scale keeps full detail at lower cost.

    Shape:
        (3, H, W) uint8 image, (H, W) mask -> (3, *crop) float32 image, (*crop) int64 mask.
    """
    if isinstance(augmentation, Augmentation) and settings:
        raise TypeError(f"pass {', '.join(settings)} inside the Augmentation, not beside it.")
    aug = augmentation if isinstance(augmentation, Augmentation) else Augmentation(augmentation, **settings)
    lo, hi = aug.short_range
    steps = [
        v2.RandomResize(lo, hi + 1, antialias=True),
        v2.RandomCrop(
            aug.crop_size, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}
        ),
    ]
    if aug.hflip > 0:
        steps.append(v2.RandomHorizontalFlip(aug.hflip))
    if aug.jitter > 0:
        steps.append(v2.ColorJitter(brightness=aug.jitter, contrast=aug.jitter, saturation=aug.jitter))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(aug.mean, aug.std)]
    return v2.Compose(steps)


class EvalPreset:
    """Evaluation pipeline: optionally resize the image to ``size``, then normalise.

    The mask keeps its native resolution unless ``resize_mask``, so that evaluation scores at the
    labels' resolution (the model's logits are resized to the mask, not the mask to the logits).

    Shape:
        (3, H, W) uint8 image, (H, W) mask -> (3, *size) float32 image, (H, W) int64 mask.
    """

    def __init__(
        self,
        size: tuple[int, int] | None = None,
        *,
        resize_mask: bool = False,
        mean: tuple[float, ...] = MEAN,
        std: tuple[float, ...] = STD,
    ):
        self.size, self.resize_mask, self.mean, self.std = size, resize_mask, mean, std

    def __call__(self, image: torch.Tensor, mask: torch.Tensor | None = None):
        if self.size is not None and tuple(image.shape[-2:]) != tuple(self.size):
            image = TF.resize(image, list(self.size), antialias=True)
            if mask is not None and self.resize_mask:
                # as a plain (1, H, W) tensor: torchvision picks nearest for a tv_tensors.Mask by
                # itself, but callers also pass plain tensors, for which the mode given here counts
                plain = mask.as_subclass(torch.Tensor)[None]
                mask = TF.resize(plain, list(self.size), interpolation=v2.InterpolationMode.NEAREST)[0]
        image = TF.normalize(TF.to_dtype(image, torch.float32, scale=True), self.mean, self.std)
        image = image.as_subclass(torch.Tensor)
        if mask is None:
            return image
        return image, mask.as_subclass(torch.Tensor)

    def __repr__(self) -> str:
        return f"EvalPreset(size={self.size}, resize_mask={self.resize_mask})"


def denormalize(image: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    """Undo ``Normalize`` for display, clamped to [0, 1].

    Shape:
        (..., 3, H, W) -> same.
    """
    mean = torch.as_tensor(mean, dtype=image.dtype, device=image.device).view(3, 1, 1)
    std = torch.as_tensor(std, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * std + mean).clamp(0, 1)
