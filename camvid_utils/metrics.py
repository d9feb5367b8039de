"""Segmentation metrics from one confusion matrix accumulated over a whole split.

Count first, score once: ``update`` adds each batch's pixels to the matrix and the scores are
derived from the totals. Averaging per-batch IoU instead weights a batch with three pedestrian
pixels like one with three thousand, and gives a different (wrong) number.

Void pixels (``ignore_index`` in the target) are not counted at all. A class absent from both the
predictions and the ground truth of the split has an undefined IoU (NaN); ``miou`` averages over
the classes whose IoU is defined. A class absent from the ground truth but predicted somewhere
has IoU 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .data import IGNORE_INDEX


class ConfusionMatrix:
    """Counts (true class, predicted class) pixel pairs; ``matrix[t, p]`` on ``matrix.device``.

    Shape:
        ``update(pred, target)``: pred and target of the same shape, e.g. (B, H, W) int.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, device=None):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        """Set every count back to zero."""
        self.matrix.zero_()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add the pixels of a batch of predictions (class ids, not logits) to the matrix."""
        if pred.shape != target.shape:
            raise ValueError(
                f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape; "
                "pass class ids (argmax over the logits' class dimension), not logits."
            )
        n = self.num_classes
        valid = target != self.ignore_index
        target, pred = target[valid].long(), pred[valid].long()
        if target.numel() and (target.min() < 0 or target.max() >= n):
            raise ValueError(
                f"target holds ids outside 0..{n - 1} that are not ignore_index={self.ignore_index}."
            )
        if pred.numel() and (pred.min() < 0 or pred.max() >= n):
            raise ValueError(f"pred holds ids outside 0..{n - 1}.")
        if self.matrix.device != target.device:
            self.matrix = self.matrix.to(target.device)
        self.matrix += torch.bincount(target * n + pred, minlength=n * n).view(n, n)

    def _ratio(self, num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        num, den = num.double(), den.double()
        return torch.where(den > 0, num / den.clamp(min=1), torch.full_like(num, float("nan")))

    def iou(self) -> torch.Tensor:
        """Per-class intersection over union, NaN for a class absent from both pred and target.

        Shape:
            (num_classes,) float64.
        """
        tp = self.matrix.diagonal()
        return self._ratio(tp, self.matrix.sum(0) + self.matrix.sum(1) - tp)

    def miou(self) -> float:
        """Mean IoU over the classes whose IoU is defined (NaN if none is)."""
        return self.iou().nanmean().item()

    def pixel_accuracy(self) -> float:
        """Fraction of non-void pixels predicted correctly."""
        return self._ratio(self.matrix.diagonal().sum(), self.matrix.sum()).item()

    def class_recall(self) -> torch.Tensor:
        """Per-class recall (accuracy on that class's pixels), NaN where the class has no pixels.

        Shape:
            (num_classes,) float64.
        """
        return self._ratio(self.matrix.diagonal(), self.matrix.sum(1))

    def class_accuracy(self) -> float:
        """Mean per-class recall over the classes present in the ground truth."""
        return self.class_recall().nanmean().item()

    def table(self, class_names: Sequence[str] | None = None) -> str:
        """Return a per-class table of IoU, recall and pixel share, then the summary scores."""
        names = list(class_names or range(self.num_classes))
        width = max(len(str(name)) for name in names + ["class accuracy"])
        total = max(int(self.matrix.sum()), 1)
        lines = [f"{'class':<{width}}  {'IoU':>6}  {'recall':>6}  {'pixels':>7}"]
        for name, iou, recall, count in zip(
            names, self.iou(), self.class_recall(), self.matrix.sum(1), strict=True
        ):
            fmt = lambda v: "   n/a" if v != v else f"{v:6.3f}"  # noqa: E731 (NaN != NaN)
            lines.append(f"{name!s:<{width}}  {fmt(iou)}  {fmt(recall)}  {100 * int(count) / total:6.2f}%")
        lines.append(f"{'mIoU':<{width}}  {self.miou():6.3f}")
        lines.append(f"{'pixel accuracy':<{width}}  {self.pixel_accuracy():6.3f}")
        lines.append(f"{'class accuracy':<{width}}  {self.class_accuracy():6.3f}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"ConfusionMatrix(num_classes={self.num_classes}, pixels={int(self.matrix.sum())})"


class Flicker:
    """Temporal consistency of a clip's label maps: the share of pixels whose class changes between
    consecutive frames, counted first and scored once, like ``ConfusionMatrix``.

    ``update(prev, curr)`` counts one step (frame t to t+1). A pixel void (``ignore_index``) in either
    frame is not counted, so predictions and labels can be compared on the same pixels by writing the
    labels' void into the predictions. Per class, a step counts the pixels of the class in either
    frame, and those of them that are the class in one frame only: the class's flicker is
    1 - IoU(region at t, region at t+1), NaN for a class in no frame. The scene moves too, so a
    prediction's flicker is read against the labels' own.

    Shape:
        ``update(prev, curr)``: two (H, W) int maps of one size.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.changed: list[torch.Tensor] = []  # per step: (C + 1,) int64, last entry all classes
        self.counted: list[torch.Tensor] = []  # per step: (C + 1,) int64

    @torch.no_grad()
    def update(self, prev: torch.Tensor, curr: torch.Tensor) -> None:
        """Add one step of the clip: the pixels of ``prev`` and ``curr`` (class ids) that differ."""
        if prev.shape != curr.shape:
            raise ValueError(
                f"consecutive frames differ in shape: {tuple(prev.shape)} and {tuple(curr.shape)}."
            )
        n = self.num_classes
        valid = (prev != self.ignore_index) & (curr != self.ignore_index)
        prev, curr = prev[valid].long(), curr[valid].long()
        if prev.numel() and (min(prev.min(), curr.min()) < 0 or max(prev.max(), curr.max()) >= n):
            raise ValueError(f"the maps hold ids outside 0..{n - 1} that are not ignore_index.")
        moved = prev != curr
        either = torch.bincount(prev, minlength=n) + torch.bincount(curr[moved], minlength=n)  # a | b
        changed = torch.bincount(prev[moved], minlength=n) + torch.bincount(curr[moved], minlength=n)
        self.changed.append(torch.cat([changed, moved.sum().view(1)]).cpu())
        self.counted.append(torch.cat([either, torch.tensor([prev.numel()], device=prev.device)]).cpu())

    def _ratio(self, num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        num, den = num.double(), den.double()
        return torch.where(den > 0, num / den.clamp(min=1), torch.full_like(num, float("nan")))

    def rate(self) -> float:
        """Share of counted pixels, over the whole clip, whose class changed from one frame to the next."""
        return self._ratio(sum(c[-1] for c in self.changed), sum(c[-1] for c in self.counted)).item()

    def per_step(self) -> torch.Tensor:
        """Share of pixels that changed class at each step (NaN for a step with no pixel counted).

        Shape:
            (steps,) float64, steps = frames - 1.
        """
        return self._ratio(torch.stack(self.changed)[:, -1], torch.stack(self.counted)[:, -1])

    def per_class(self) -> torch.Tensor:
        """Each class's flicker over the whole clip: changed / present pixels, NaN for an absent class.

        Shape:
            (num_classes,) float64.
        """
        return self._ratio(sum(self.changed)[:-1], sum(self.counted)[:-1])

    def __repr__(self) -> str:
        return f"Flicker(num_classes={self.num_classes}, steps={len(self.changed)})"


def flicker(clip, num_classes: int, ignore_index: int = IGNORE_INDEX) -> Flicker:
    """Return the ``Flicker`` of a clip of label maps (predictions or ground truth), every step counted.

    Shape:
        clip: a sequence of (H, W) int maps, or a (T, H, W) tensor.
    """
    meter = Flicker(num_classes, ignore_index)
    for prev, curr in zip(clip[:-1], clip[1:], strict=True):
        meter.update(torch.as_tensor(prev), torch.as_tensor(curr))
    return meter
