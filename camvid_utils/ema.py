"""An exponential moving average (EMA) of a model's weights, kept beside the trained ones.

After every optimiser step each floating-point weight and buffer (batch-norm statistics included)
moves towards the model's: ``ema = d * ema + (1 - d) * weight``, with the decay ``d`` warmed up as
``min(decay, (1 + n) / (10 + n))`` after ``n`` earlier updates, so that a short run is not dominated
by its random initial weights. Integer buffers (batch norm's step counter) are copied. The average
smooths out the last steps' noise, which often scores a little higher than the raw weights; the
training itself never sees it, so with or without EMA a run takes the same steps.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay(decay: float, updates: int) -> float:
    """Return the decay of the update that follows ``updates`` earlier ones (warmed up)."""
    return min(decay, (1 + updates) / (10 + updates))


class ModelEMA:
    """A copy of ``model`` (in eval mode) whose weights follow the model's as an EMA with ``decay``."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the EMA decay must lie between 0 and 1 (such as 0.999), got {decay}.")
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s current weights."""
        d = ema_decay(self.decay, self.updates)
        theirs = model.state_dict()
        for name, mine in self.module.state_dict().items():
            if mine.is_floating_point():
                mine.lerp_(theirs[name].to(mine.dtype), 1.0 - d)
            else:
                mine.copy_(theirs[name])
        self.updates += 1

    def state_dict(self) -> dict:
        """Return what a checkpoint stores: the averaged weights, the decay and the update count."""
        return {"model": self.module.state_dict(), "decay": self.decay, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        """Restore the average saved by ``state_dict``."""
        self.module.load_state_dict(state["model"])
        self.decay, self.updates = state["decay"], state["updates"]
