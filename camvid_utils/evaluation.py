"""Scoring a split: ``evaluate`` a model on a loader, ``evaluate_checkpoint`` a saved one on a folder.

Both count first and score once: one confusion matrix over the whole split, at the labels' native
resolution, and the loss summed over every labelled pixel. What they return, an ``Evaluation``,
keeps those counts, so that the shares of a split scored by several processes add up to the whole
split's (``Evaluation.all_reduce``), and derives the scores from them once (``Evaluation.scores``,
what ``python -m camvid_utils evaluate --json`` writes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import LoadedModel, check_classes
from .data import IGNORE_INDEX, CamVid, check_labels
from .inference import tta_logits
from .metrics import ConfusionMatrix
from .runtime import autocast, pick_device
from .transforms import EvalPreset


@dataclass
class Evaluation:
    """The counts of one scored split: its confusion matrix, its summed loss and its frames.

    ``loss_sum`` is the per-pixel loss summed over the ``loss_pixels`` labelled pixels (None when no
    loss function was given); ``dataset`` and ``device`` are those ``evaluate_checkpoint`` used.
    """

    confusion: ConfusionMatrix
    loss_sum: float | None
    loss_pixels: int
    num_images: int
    tta: str | None = None
    dataset: CamVid | None = None
    device: torch.device | None = None

    @property
    def loss(self) -> float | None:
        """The mean per-pixel loss over the labelled pixels, or None (no loss function, no pixel)."""
        return self.loss_sum / self.loss_pixels if self.loss_sum is not None and self.loss_pixels else None

    def all_reduce(self) -> Evaluation:
        """Sum the counts over all ranks in place, so that every rank holds the whole split's; return self.

        Every rank must call it (it is a collective). Nothing changes in a single process.
        """
        if not distributed.active():
            return self
        matrix = self.confusion.matrix
        totals = [0.0 if self.loss_sum is None else self.loss_sum, self.loss_pixels, self.num_images]
        totals = torch.tensor(totals, dtype=torch.float64, device=matrix.device)
        torch.distributed.all_reduce(matrix)
        torch.distributed.all_reduce(totals)
        loss_sum, loss_pixels, num_images = totals.tolist()
        self.loss_sum = None if self.loss_sum is None else loss_sum
        self.loss_pixels, self.num_images = int(loss_pixels), int(num_images)
        return self

    def scores(self) -> dict:
        """Return the scores ``evaluate --json`` writes: mIoU, pixel and class accuracy, IoU per class.

        A class whose IoU is undefined (absent from labels and predictions) has None.
        """
        assert self.dataset is not None, "scores name the classes: evaluate with evaluate_checkpoint"
        cm, classes = self.confusion, self.dataset.classes
        return {
            "miou": cm.miou(),
            "pixel_accuracy": cm.pixel_accuracy(),
            "class_accuracy": cm.class_accuracy(),
            "per_class_iou": {
                name: None if v != v else v for name, v in zip(classes, cm.iou().tolist(), strict=True)
            },
            "num_images": self.num_images,
            "tta": self.tta,
        }

    def to_json(self) -> str:
        """Return ``scores()`` as the indented JSON text ``evaluate --json`` writes."""
        return json.dumps(self.scores(), indent=2)


def collate_eval(batch):
    """Stack the images; keep the native-resolution masks as a list (their sizes may differ)."""
    images, masks = zip(*batch, strict=True)
    return torch.stack(images), list(masks)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    num_classes: int,
    *,
    loss_fn: nn.Module | None = None,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    ignore_index: int = IGNORE_INDEX,
    desc: str = "eval",
    tta: str | None = None,
) -> Evaluation:
    """Return the ``Evaluation`` of a whole split: one confusion matrix at the labels' native resolution.

    The loader yields ``(images, masks)`` from ``collate_eval``; logits are resized (bilinearly) to
    each mask's size before the argmax, whatever size the model ran at. ``tta="flip"`` averages the
    softmax of each frame and its mirror, ``tta="multiscale"`` that of six views at three scales,
    averaged at the mask's resolution (``inference.tta_logits``). Under torchrun each process scores
    its own frames; ``Evaluation.all_reduce`` adds them up.

    Shape:
        images (B, 3, h, w), masks B x (H, W) -> one (num_classes, num_classes) confusion matrix.
    """
    model.eval()
    cm = ConfusionMatrix(num_classes, ignore_index, device=device)
    loss_sum, loss_pixels, count = 0.0, 0, 0
    for images, masks in tqdm(loader, desc=desc, leave=False, disable=not distributed.is_main()):
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp_dtype):
            logits = _scores(model, images, masks, tta)  # (B, C, h, w), or the masks' size
        for one, mask in zip(logits, masks, strict=True):
            mask = mask.to(device, non_blocking=True)
            if one.shape[-2:] != mask.shape[-2:]:
                one = F.interpolate(one[None], size=mask.shape[-2:], mode="bilinear", align_corners=False)
            else:
                one = one[None]
            cm.update(one.argmax(1)[0], mask)  # (H, W)
            if loss_fn is not None:
                valid = int((mask != ignore_index).sum())
                loss_sum += loss_fn(one, mask[None]).item() * valid
                loss_pixels += valid
            count += 1
    return Evaluation(cm, loss_sum if loss_fn is not None else None, loss_pixels, count, tta)


def _scores(model: nn.Module, images: torch.Tensor, masks: list, tta: str | None):
    """Return ``tta_logits`` of a batch; multi-scale views are averaged at each mask's resolution."""
    if tta != "multiscale":
        return tta_logits(model, images, tta).float()
    sizes = {tuple(m.shape[-2:]) for m in masks}
    if len(sizes) == 1:
        return tta_logits(model, images, tta, size=sizes.pop())
    return [
        tta_logits(model, x[None], tta, size=tuple(m.shape[-2:]))[0]
        for x, m in zip(images, masks, strict=True)
    ]


def evaluate_checkpoint(
    loaded: LoadedModel,
    root: str | Path,
    split: str,
    *,
    device: torch.device | str | None = None,
    batch_size: int = 4,
    max_images: int | None = None,
    num_workers: int = 0,
    tta: str | None = None,
) -> Evaluation:
    """Return the ``Evaluation`` of a loaded checkpoint on one split of ``root`` (native resolution).

    The frames are fed as in training (the checkpoint's input size and normalisation); the classes of
    the data must be the checkpoint's; ``tta`` as in ``evaluate``. The result names the ``CamVid``
    scored (``dataset``) and the ``device``.
    """
    device = pick_device(device) if device is None or isinstance(device, str) else device
    dataset = CamVid(
        root,
        split,
        class_set=loaded.class_set,
        transform=EvalPreset(loaded.image_size, mean=loaded.mean, std=loaded.std),
    )
    check_classes(loaded.classes, dataset.classes, "the checkpoint", root)
    check_labels(dataset)
    frames = dataset if max_images is None else Subset(dataset, range(min(max_images, len(dataset))))
    loader = DataLoader(frames, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_eval)
    model_device = next(loaded.model.parameters()).device
    if model_device != device:
        loaded.model.to(device)
    result = evaluate(loaded.model, loader, device, dataset.num_classes, desc=f"{split}", tta=tta)
    result.dataset, result.device = dataset, device
    return result
