"""Per-pixel softmax focal loss (Lin et al., 2017) and class weights from pixel frequencies.

The focal term multiplies each pixel's cross-entropy by ``(1 - p_y) ** gamma``, where ``p_y`` is that
pixel's softmax probability of its true class: confident, easy pixels (most of the road and sky)
are down-weighted so the hard ones (poles, signs, pedestrians) drive the gradient. Applying the
term to the batch-mean cross-entropy instead, as some tutorials do, only rescales the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .data import IGNORE_INDEX


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float = 2.0,
    alpha: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
    reduction: str = "mean",
) -> torch.Tensor:
    """Return the multi-class focal loss ``-alpha[y] * (1 - p_y)**gamma * log p_y`` per pixel.

    ``log p_y`` comes from ``log_softmax`` (stable for any logits). ``alpha`` (per-class weights)
    multiplies each pixel's term after ``p_y`` is computed. Pixels equal to ``ignore_index``
    contribute nothing and are not counted: "mean" divides the sum by the number of valid pixels
    (not by the sum of their weights), "sum" adds the terms, "none" returns them with 0 at void.
    With ``gamma=0`` and no ``alpha`` it equals ``F.cross_entropy(logits, target,
    ignore_index=ignore_index)``.

    Shape:
        logits (B, C, H, W), target (B, H, W) int64 -> scalar, or (B, H, W) for "none".
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}.")
    if logits.ndim != target.ndim + 1 or logits.shape[:1] + logits.shape[2:] != target.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match: "
            "expected (B, C, H, W) and (B, H, W)."
        )
    num_classes = logits.shape[1]
    valid = target != ignore_index  # (B, H, W)
    safe_target = torch.where(valid, target, 0).long()
    if ((safe_target < 0) | (safe_target >= num_classes)).any():
        bad = target[valid & ((target < 0) | (target >= num_classes))].unique().tolist()
        raise ValueError(
            f"target holds class ids {bad} outside 0..{num_classes - 1} (void is {ignore_index}); "
            "check the class set of the data against the model's num_classes."
        )
    log_probs = F.log_softmax(logits.float(), dim=1)  # (B, C, H, W), fp32 even under autocast
    log_p = log_probs.gather(1, safe_target.unsqueeze(1)).squeeze(1)  # (B, H, W)
    if gamma:
        # 1 - p_y, floored so that gamma < 1 has a finite gradient where p_y == 1 (0**gamma' = inf)
        focus = (-torch.expm1(log_p)).clamp(min=1e-12) ** gamma
        loss = -focus * log_p
    else:
        loss = -log_p
    if alpha is not None:
        alpha = torch.as_tensor(alpha, dtype=loss.dtype, device=loss.device)
        if alpha.shape != (num_classes,):
            raise ValueError(
                f"alpha must have one weight per class ({num_classes}), got {tuple(alpha.shape)}."
            )
        loss = loss * alpha[safe_target]
    loss = torch.where(valid, loss, 0.0)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / valid.sum().clamp(min=1)


class FocalLoss(nn.Module):
    """``nn.Module`` form of ``focal_loss``; it only stores the arguments.

    Shape:
        logits (B, C, H, W), target (B, H, W) -> scalar, or (B, H, W) for "none".
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: torch.Tensor | None = None,
        ignore_index: int = IGNORE_INDEX,
        reduction: str = "mean",
    ):
        super().__init__()
        self.gamma, self.ignore_index, self.reduction = gamma, ignore_index, reduction
        self.register_buffer("alpha", None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return focal_loss(
            logits,
            target,
            gamma=self.gamma,
            alpha=self.alpha,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, ignore_index={self.ignore_index}, reduction={self.reduction!r}"


def class_weights(
    counts: torch.Tensor,
    method: str = "median_frequency",
    image_counts: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return per-class loss weights from per-class pixel counts (void already left out).

    ``pixel_counts(dataset, with_image_totals=True)`` gives both ``counts`` and ``image_counts``.

    ``"median_frequency"`` (Eigen and Fergus, used by SegNet): ``median(f) / f_c``, where ``f_c`` is
    the class's pixel count divided by the pixel total of the images it appears in
    (``image_counts``; the total of all pixels when it is not given). ``"inverse_sqrt"``: a softer
    ``1 / sqrt(f_c)``, scaled so that the average weight over all pixels is 1. Classes with no
    pixels get weight 0: no pixel will ever use it.

    Shape:
        counts (C,) -> weights (C,) float32.
    """
    counts = torch.as_tensor(counts, dtype=torch.float64)
    present = counts > 0
    if not present.any():
        raise ValueError("class_weights needs at least one class with pixels; all counts are 0.")
    weights = torch.zeros_like(counts)
    if method == "median_frequency":
        totals = counts.sum() if image_counts is None else torch.as_tensor(image_counts, dtype=torch.float64)
        freq = counts / totals
        weights[present] = freq[present].median() / freq[present]
    elif method == "inverse_sqrt":
        freq = counts / counts.sum()
        weights[present] = freq[present].rsqrt()
        weights /= (weights * freq).sum()
    else:
        raise ValueError(f"method must be 'median_frequency' or 'inverse_sqrt', got {method!r}.")
    return weights.float()
