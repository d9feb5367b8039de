"""Training batches augmented on the training device, from a split decoded once into memory.

The DataLoader path decodes two PNGs and runs ``transforms.train_preset`` per sample on CPU worker
processes, every epoch. A Colab VM has 2 vCPUs; a datacentre GPU trains the U-Net far faster than
2 to 4 workers can decode and augment, so the GPU waits. Here ``preload_split`` decodes every frame
of a split once into uint8 tensors on the device, and ``DeviceAugment`` cuts each batch out of them
with a few tensor operations on that device: no decoding, no worker processes, no host-to-device copy.

The augmentation is the same ``transforms.Augmentation`` that ``train_preset`` runs, with its joint
semantics, sample by sample:

- the short side is resized to an integer drawn uniformly from
  ``[round(min(size) * scale[0]), round(min(size) * scale[1])]``, the long side to keep the aspect
  ratio (``v2.RandomResize``); the image bilinearly with antialiasing, the mask with nearest neighbour;
- a random ``crop`` is cut out; a frame smaller than the crop is padded by the shortfall on both
  sides first, as ``v2.RandomCrop(pad_if_needed=True)`` does, with 0 for the image and void (255)
  for the mask;
- a horizontal flip with probability ``hflip``;
- brightness, contrast and saturation factors, each uniform in ``[1 - jitter, 1 + jitter]``;
- normalisation with ``mean`` and ``std``.

Two differences, neither in the distribution of what is drawn: the jitter is applied in one fixed
order (brightness, contrast, saturation; ``v2.ColorJitter`` draws a random order per image), and it
works on floats in [0, 1] instead of rounding to uint8 after each step.

Every random number of an epoch comes from one CPU generator seeded by ``(seed, epoch)``
(``runtime.epoch_generator``), as the DataLoader's shuffling in ``training.fit`` is: an epoch's
batches depend on those two numbers only,
so a resumed run sees exactly the batches an uninterrupted one would have. Drawing on the CPU also
means the sizes and offsets are Python numbers at once: no device read, no synchronisation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F

from .data import IGNORE_INDEX, CamVid, CamVidError
from .runtime import epoch_generator
from .transforms import Augmentation

_GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


def preload_split(dataset: CamVid, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every frame of ``dataset`` once; return its images and masks as uint8 tensors on ``device``.

    PNG decoding runs on a few threads (PIL releases the GIL while it decodes). A split of 367
    SegNet frames (480x360) takes 250 MB; 369 Kaggle frames (960x720) take 1 GB.

    Shape:
        images (N, 3, H, W) uint8, masks (N, H, W) uint8 with 255 = void.
    """
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        frames = list(pool.map(dataset.load_frame, range(len(dataset))))
    height, width = frames[0][1].shape
    for i, (_, mask) in enumerate(frames):
        if tuple(mask.shape) != (height, width):
            raise CamVidError(
                f"{dataset.frames[i]} is {mask.shape[1]}x{mask.shape[0]} but {dataset.frames[0]} is "
                f"{width}x{height}; preloading needs one frame size per split: use data_path='loader'."
            )
    images = torch.stack([image for image, _ in frames]).to(device)
    masks = torch.stack([mask.to(torch.uint8) for _, mask in frames]).to(device)
    return images, masks


def resized_size(height: int, width: int, short: int) -> tuple[int, int]:
    """Return the (height, width) that ``v2.Resize(short)`` gives a frame: short side ``short``."""
    if height <= width:
        return short, int(short * width / height)
    return int(short * height / width), short


class DeviceAugment:
    """An ``Augmentation`` (what ``train_preset`` runs) on whole batches, on the device of the split.

    ``augmentation`` is an ``Augmentation``, or a size and the settings that make one
    (``DeviceAugment(images, masks, size, batch_size=4, hflip=0.5)``). ``epoch(e)`` returns the
    epoch's batches (shuffled, ``batch_size`` each, the last partial one dropped when ``drop_last``);
    ``augment(indices, generator)`` builds one batch.

    Shape:
        images (N, 3, H, W) uint8, masks (N, H, W) uint8 -> batches of
        (B, 3, *crop) float32 normalised images and (B, *crop) int64 masks.
    """

    def __init__(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        augmentation: Augmentation | tuple[int, int],
        *,
        batch_size: int,
        seed: int = 0,
        drop_last: bool = True,
        **settings,
    ):
        assert images.dtype == torch.uint8 and images.ndim == 4, "images must be (N, 3, H, W) uint8"
        assert masks.shape == (images.shape[0], *images.shape[2:]), "masks must be (N, H, W), one per image"
        if isinstance(augmentation, Augmentation) and settings:
            raise TypeError(f"pass {', '.join(settings)} inside the Augmentation, not beside it.")
        if not isinstance(augmentation, Augmentation):
            augmentation = Augmentation(tuple(augmentation), **settings)
        aug = self.augmentation = augmentation
        self.images, self.masks = images, masks
        self.size, self.crop, self.short_range = aug.size, aug.crop_size, aug.short_range
        self.hflip, self.jitter = aug.hflip, aug.jitter
        self.batch_size, self.seed, self.drop_last = batch_size, seed, drop_last
        device = images.device
        std_t = torch.tensor(aug.std, device=device).view(1, 3, 1, 1)
        self.scale = 1 / std_t  # normalising is one multiply-add: x * (1 / std) + (-mean / std)
        self.shift = -torch.tensor(aug.mean, device=device).view(1, 3, 1, 1) / std_t
        if device.type == "cpu":
            self.images = images.contiguous(memory_format=torch.channels_last)

    def __len__(self) -> int:
        """Return the number of frames."""
        return self.images.shape[0]

    def generator(self, epoch: int) -> torch.Generator:
        """Return the CPU generator of ``epoch``, seeded as ``training.fit`` seeds its DataLoader."""
        return epoch_generator(self.seed, epoch)

    def epoch(self, epoch: int) -> EpochBatches:
        """Return the batches of ``epoch``: an iterable with a length, like a DataLoader."""
        return EpochBatches(self, epoch)

    def augment(self, indices: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment the frames ``indices`` with random numbers drawn from ``generator``.

        On the CPU it runs on one thread: its many small operations gain little from a second one
        (about 20% on an idle 2-core machine) and lose several times over to the threads' waiting on
        each other when another process holds a core.

        Shape:
            indices (B,) -> images (B, 3, *crop) float32 normalised, masks (B, *crop) int64.
        """
        if self.images.device.type != "cpu":
            return self._augment(indices, generator)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._augment(indices, generator)
        finally:
            torch.set_num_threads(threads)

    def _augment(
        self, indices: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n, (crop_h, crop_w) = len(indices), self.crop
        lo, hi = self.short_range
        shorts = torch.randint(lo, hi + 1, (n,), generator=generator).tolist()
        offsets = torch.rand(n, 2, generator=generator).tolist()  # where the crop lies, per axis
        flips = (torch.rand(n, generator=generator) < self.hflip).tolist()
        factors = 1 + self.jitter * (2 * torch.rand(n, 3, generator=generator) - 1)  # (B, 3)
        device = self.images.device
        # uint8 until the whole batch is cut out: a quarter of float32's memory traffic
        images = torch.empty(n, 3, crop_h, crop_w, dtype=torch.uint8, device=device)
        masks = torch.empty(n, crop_h, crop_w, dtype=torch.uint8, device=device)
        height, width = self.images.shape[-2:]
        for i, index in enumerate(indices.tolist()):
            new_h, new_w = resized_size(height, width, shorts[i])
            rows, out_rows = _crop_window(new_h, crop_h, offsets[i][0])
            cols, out_cols = _crop_window(new_w, crop_w, offsets[i][1])
            if (out_rows.stop - out_rows.start, out_cols.stop - out_cols.start) != (crop_h, crop_w):
                images[i], masks[i] = 0, IGNORE_INDEX  # the padding of v2.RandomCrop(pad_if_needed)
            image = self._resize(self.images[index], new_h, new_w)[:, rows, cols]  # (3, h, w)
            # Nearest neighbour as F.interpolate(mode="nearest") picks it, for the window only
            src_rows = _nearest_source(height, new_h, rows, device)
            src_cols = _nearest_source(width, new_w, cols, device)
            if flips[i]:  # mirror the window and where it goes, as flipping the padded crop does
                image, src_cols = image.flip(-1), src_cols.flip(0)
                out_cols = slice(crop_w - out_cols.stop, crop_w - out_cols.start)
            images[i, :, out_rows, out_cols] = image
            mask_rows = self.masks[index].index_select(0, src_rows)  # (h, W)
            masks[i, out_rows, out_cols] = torch.gather(mask_rows, 1, src_cols.expand(len(src_rows), -1))
        if self.jitter > 0:
            x = self._color_jitter(images, factors.to(device, non_blocking=True))
        else:
            x = images.float().div_(255)
        return x.mul_(self.scale).add_(self.shift), masks.long()  # (x - mean) / std

    def _resize(self, image: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Resize one (3, H, W) uint8 image bilinearly with antialiasing, as ``v2.Resize`` does."""
        if image.device.type == "cpu":  # the CPU has a fast uint8 kernel (channels-last input)
            return F.interpolate(image[None], (height, width), mode="bilinear", antialias=True)[0]
        resized = F.interpolate(image[None].float(), (height, width), mode="bilinear", antialias=True)
        return resized[0].round_().clamp_(0, 255).to(torch.uint8)

    def _color_jitter(self, images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
        """Brightness, contrast and saturation as one affine colour map per image, clamped to [0, 1].

        With x in [0, 1], g = gray(x) and m its mean over the image, brightness b, contrast c and
        saturation s in turn give ``s*c*b*x + (1-s)*c*b*g + (1-c)*b*m*(s + (1-s)*sum(w))``; the
        per-pixel work is then one pass over the batch instead of one per step. torchvision clamps
        after each step; this clamps once, which differs only on pixels a step pushes past black
        or white and that a later step would pull back.

        Shape:
            images (B, 3, h, w) uint8, factors (B, 3) -> (B, 3, h, w) float32 in [0, 1].
        """
        b, c, s = (f.view(-1, 1, 1, 1) for f in factors.unbind(1))
        b = b / 255  # uint8 in, [0, 1] out
        w = _GRAY
        x = images.float()  # (B, 3, h, w) in 0..255
        gray = x[:, 0:1] * w[0]  # (B, 1, h, w)
        gray.add_(x[:, 1:2], alpha=w[1]).add_(x[:, 2:3], alpha=w[2])
        mean = gray.mean((-2, -1), keepdim=True)  # (B, 1, 1, 1)
        shift = (1 - c) * b * mean * (s + (1 - s) * sum(w))
        gray.mul_((1 - s) * c * b).add_(shift)
        return x.mul_(s * c * b).add_(gray).clamp_(0, 1)


def _nearest_source(length: int, new_length: int, window: slice, device) -> torch.Tensor:
    """Return the source index F.interpolate(mode="nearest") reads for each output index in ``window``."""
    out = torch.arange(window.start, window.stop, device=device, dtype=torch.float32)
    return (out * (length / new_length)).floor_().long().clamp_(max=length - 1)


def _crop_window(length: int, crop: int, fraction: float) -> tuple[slice, slice]:
    """Return where a random crop of ``crop`` pixels reads a resized axis of ``length`` and writes the output.

    As ``v2.RandomCrop(pad_if_needed=True)``: an axis shorter than the crop is padded by the
    shortfall on both sides, then the offset is uniform over the padded axis.
    """
    pad = max(crop - length, 0)
    start = int(fraction * (length + 2 * pad - crop + 1)) - pad  # in resized coordinates, may be < 0
    read = slice(max(start, 0), min(start + crop, length))
    write = slice(read.start - start, read.stop - start)
    return read, write


class EpochBatches:
    """One epoch of ``DeviceAugment`` batches, drawn lazily in order; ``len`` is the number of batches."""

    def __init__(self, augment: DeviceAugment, epoch: int):
        self.augment, self.epoch = augment, epoch

    def __len__(self) -> int:
        n, b = len(self.augment), self.augment.batch_size
        return n // b if self.augment.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = self.augment.generator(self.epoch)
        order = torch.randperm(len(self.augment), generator=generator)
        b = self.augment.batch_size
        for k in range(len(self)):
            yield self.augment.augment(order[k * b : (k + 1) * b], generator)
