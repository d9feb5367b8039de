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

``EncoderUNet`` is the same U-Net with its contracting path replaced by an ImageNet-pretrained encoder
(``encoders.py``): its five feature maps at strides 2..32 are the skips and the bottleneck, and a
decoder of ``DoubleConv`` blocks climbs back up, each up-sampled to its skip's exact size:

    image ─ encoder ─ f1 (stride 2) ──────────────────────────────── skip ─┐
                        f2 (stride 4) ─────────────────────── skip ─┐      │
                          ... f5 (stride 32) ─ up ─ concat ─ ... ───┘      │
                                                            up ─ concat ───┘ ─ up ─ DoubleConv ─ 1x1 conv

``build_model(config)`` builds either kind from its configuration (a checkpoint's ``model_config``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from .encoders import ENCODERS, build_encoder


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


@dataclass
class EncoderUNetConfig:
    """Hyper-parameters of an ``EncoderUNet``; stored in checkpoints to rebuild the model.

    The decoder's widths, from full resolution up to stride 16, are ``base_channels`` times 1, 2, 4, 8
    and 16, capped at ``max_channels``.
    """

    num_classes: int
    encoder: str = "lite0"
    in_channels: int = 3
    base_channels: int = 16
    max_channels: int | None = None

    depth = 5  # the encoder halves the frame five times: sides of at least 32 pixels

    def widths(self) -> list[int]:
        """The decoder's channels at strides 1, 2, 4, 8 and 16."""
        if self.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {self.encoder!r}; choose one of {', '.join(ENCODERS)}")
        cap = self.max_channels or 1 << 30
        return [min(self.base_channels * 2**level, cap) for level in range(5)]


class DecoderBlock(nn.Module):
    """Up-sample to the skip's size (nearest), concatenate the skip, then ``DoubleConv``."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.conv = DoubleConv(in_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")  # (B, C_in, h_skip, w_skip)
        return self.conv(torch.cat([skip, x], dim=1))  # (B, C_out, h_skip, w_skip)


class EncoderUNet(nn.Module):
    """U-Net on a pretrained encoder, returning per-pixel class logits.

    ``pretrained`` loads the encoder's ImageNet weights (``encoders.build_encoder``); a model rebuilt
    from a checkpoint does not need them. ``freeze_encoder()`` stops the encoder's weights and its
    batch-norm statistics from changing (it stays in eval mode under ``train()``) until
    ``freeze_encoder(False)``.

    Shape:
        input (B, in_channels, H, W) -> logits (B, num_classes, H, W), any H, W >= 32.
    """

    def __init__(
        self,
        num_classes: int,
        encoder: str = "lite0",
        in_channels: int = 3,
        base_channels: int = 16,
        max_channels: int | None = None,
        *,
        pretrained: bool = False,
    ):
        super().__init__()
        if num_classes < 1 or base_channels < 1:
            raise ValueError(
                f"EncoderUNet needs num_classes >= 1 and base_channels >= 1, got {num_classes} and "
                f"{base_channels}."
            )
        self.config = EncoderUNetConfig(num_classes, encoder, in_channels, base_channels, max_channels)
        widths, skips = self.config.widths(), ENCODERS[encoder].channels  # strides 1..16, strides 2..32
        self.encoder = build_encoder(encoder, pretrained=pretrained, in_channels=in_channels)
        # climbing from stride 32: into stride 16 (joined with f4), 8 (f3), 4 (f2), 2 (f1)
        ins = [skips[4], widths[4], widths[3], widths[2]]
        self.ups = nn.ModuleList(DecoderBlock(ins[i], skips[3 - i], widths[4 - i]) for i in range(4))
        self.final = DoubleConv(widths[1], widths[0])  # at full resolution, where there is no skip
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        self.encoder_frozen = False

    @classmethod
    def from_config(cls, config: EncoderUNetConfig | dict, pretrained: bool = False) -> EncoderUNet:
        """Build an encoder U-Net from an ``EncoderUNetConfig`` or its ``asdict`` form."""
        values = asdict(config) if isinstance(config, EncoderUNetConfig) else config
        return cls(**values, pretrained=pretrained)

    def freeze_encoder(self, frozen: bool = True) -> EncoderUNet:
        """Freeze (or unfreeze) the encoder's weights and batch-norm statistics; return ``self``."""
        self.encoder_frozen = frozen
        self.encoder.requires_grad_(not frozen)
        self.train(self.training)  # puts the encoder in eval mode while frozen
        return self

    def train(self, mode: bool = True) -> EncoderUNet:
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()  # batch norm keeps its ImageNet statistics
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"EncoderUNet expects a (B, {self.config.in_channels}, H, W) batch, got {tuple(x.shape)}; "
                "add a batch dimension with x.unsqueeze(0) for a single image."
            )
        f1, f2, f3, f4, x5 = self.encoder.features(x)  # strides 2, 4, 8, 16, 32
        y = x5  # (B, c5, H/32, W/32): the bottleneck
        for up, skip in zip(self.ups, (f4, f3, f2, f1), strict=True):
            y = up(y, skip)  # up one level, joined with the matching skip
        y = F.interpolate(y, size=x.shape[-2:], mode="nearest")  # (B, w1, H, W)
        return self.head(self.final(y))  # (B, num_classes, H, W)


def build_model(config: UNetConfig | EncoderUNetConfig | dict, pretrained: bool = False) -> nn.Module:
    """Return the U-Net a configuration describes: an ``EncoderUNet`` if it names an encoder.

    ``pretrained`` loads an encoder's ImageNet weights (a plain ``UNet`` has none).
    """
    if isinstance(config, dict):
        config = (EncoderUNetConfig if "encoder" in config else UNetConfig)(**config)
    if isinstance(config, EncoderUNetConfig):
        return EncoderUNet.from_config(config, pretrained=pretrained)
    return UNet.from_config(config)


def config_class(config: dict) -> type:
    """Return the configuration class a checkpoint's ``model_config`` dict belongs to."""
    return EncoderUNetConfig if "encoder" in config else UNetConfig


def config_fields(cls: type) -> set[str]:
    """Return the field names of a model configuration class."""
    return {f.name for f in fields(cls)}


def describe(model: nn.Module) -> str:
    """Return a model's name and size, such as ``EncoderUNet(lite0, base 16, 5.20 M parameters)``."""
    config = model.config
    kind = (
        f"EncoderUNet({config.encoder}, base {config.base_channels}"
        if hasattr(config, "encoder")
        else (f"UNet(base {config.base_channels}")
    )
    return f"{kind}, {count_parameters(model, trainable_only=False) / 1e6:.2f} M parameters)"


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Return the number of trainable parameters (all of them, frozen ones too, unless ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
