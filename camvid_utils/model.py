"""The U-Net of Ronneberger, Fischer and Brox (2015), with batch norm, for any input size.

    input ─ DoubleConv ────────────────────────────── skip 0 ─┐
              Down ─ DoubleConv ──────────────── skip 1 ─┐    │
                       Down ─ ... ─ Down (bottleneck)    │    │
                                       Up ─ concat ──────┘    │
                                              Up ─ concat ────┘ ─ 1x1 conv ─ logits

Parameter counts (3 input channels, 11 classes, learned up-sampling):
base 64, depth 4: 31.0 M; base 32: 7.8 M; base 32 with ``max_channels=256``: 5.1 M;
base 24: 4.4 M; base 16: 1.9 M.
The output always has the input's height and width: max-pooling floors odd sizes and each ``Up``
pads its up-sampled map back to its skip's size before concatenating.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class UNetConfig:
    """Hyper-parameters of a ``UNet``; stored in checkpoints to rebuild the model."""

    num_classes: int
    in_channels: int = 3
    base_channels: int = 64
    depth: int = 4
    bilinear: bool = False
    max_channels: int | None = None

    def widths(self) -> list[int]:
        """Channels at each level, from the full-resolution stage down to the bottleneck."""
        cap = self.max_channels or 1 << 30
        return [min(self.base_channels * 2**level, cap) for level in range(self.depth + 1)]


class DoubleConv(nn.Sequential):
    """(3x3 conv, batch norm, ReLU) twice; keeps height and width."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    """2x2 max-pool, then ``DoubleConv``: halves height and width (rounding down)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))


class Up(nn.Module):
    """Up-sample 2x, pad to the skip's size, concatenate the skip, then ``DoubleConv``.

    ``bilinear`` up-samples by interpolation and a 1x1 conv; otherwise by a learned 2x2
    transposed conv. Either way the up-sampled map has ``skip_channels`` channels.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, bilinear: bool = False):
        super().__init__()
        if bilinear:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, skip_channels, 1),
            )
        else:
            self.up = nn.ConvTranspose2d(in_channels, skip_channels, 2, stride=2)
        self.conv = DoubleConv(2 * skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)  # (B, C_skip, 2h, 2w)
        dh, dw = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
        if dh or dw:  # an odd size was floored on the way down
            x = F.pad(x, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])
        return self.conv(torch.cat([skip, x], dim=1))  # (B, C_out, H, W)


class UNet(nn.Module):
    """U-Net returning per-pixel class logits.

    Shape:
        input (B, in_channels, H, W) -> logits (B, num_classes, H, W), any H, W >= 2**depth.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        base_channels: int = 64,
        depth: int = 4,
        bilinear: bool = False,
        max_channels: int | None = None,
    ):
        super().__init__()
        if num_classes < 1 or depth < 1 or base_channels < 1:
            raise ValueError(
                f"UNet needs num_classes >= 1, depth >= 1 and base_channels >= 1, got "
                f"{num_classes}, {depth} and {base_channels}."
            )
        self.config = UNetConfig(num_classes, in_channels, base_channels, depth, bilinear, max_channels)
        widths = self.config.widths()
        self.inc = DoubleConv(in_channels, widths[0])
        self.downs = nn.ModuleList(Down(widths[i], widths[i + 1]) for i in range(depth))
        self.ups = nn.ModuleList(
            Up(widths[i + 1], widths[i], widths[i], bilinear) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    @classmethod
    def from_config(cls, config: UNetConfig | dict) -> UNet:
        """Build a U-Net from a ``UNetConfig`` or its ``asdict`` form."""
        return cls(**(asdict(config) if isinstance(config, UNetConfig) else config))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"UNet expects a (B, {self.config.in_channels}, H, W) batch, got {tuple(x.shape)}; "
                "add a batch dimension with x.unsqueeze(0) for a single image."
            )
        skips = [self.inc(x)]  # (B, w0, H, W)
        for down in self.downs:
            skips.append(down(skips[-1]))  # (B, w_{i+1}, H / 2^(i+1), W / 2^(i+1))
        x = skips.pop()  # the bottleneck
        for up in self.ups:
            x = up(x, skips.pop())  # back up one level, joined with the matching skip
        return self.head(x)  # (B, num_classes, H, W)


def count_parameters(model: nn.Module) -> int:
    """Return the number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
