"""The on-device augmentation against ``train_preset``: the same distribution of augmentations (not
the same pixels), masks only ever picked by nearest neighbour and padded with void, image and mask
moved together, the colour jitter's arithmetic, batches fixed by the seed and the epoch, and a
training run on them that resumes exactly."""

from dataclasses import replace

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

import camvid_utils.training as training
from camvid_utils.config import TrainConfig
from camvid_utils.data import IGNORE_INDEX, CamVid, CamVidError
from camvid_utils.device_augment import DeviceAugment, preload_split, resized_size
from camvid_utils.training import fit, uses_device_augment
from camvid_utils.transforms import MEAN, STD, Augmentation, denormalize, train_preset
from conftest import SAMPLE

H0, W0 = 60, 80  # a small frame with CamVid's 4:3 aspect ratio
SIZE = (30, 40)


def ramp_frame() -> tuple[torch.Tensor, torch.Tensor]:
    """A frame whose mask is its column index and whose red channel is 3x that: position is readable.

    Shape:
        image (3, H0, W0) uint8, mask (H0, W0) uint8.
    """
    columns = torch.arange(W0, dtype=torch.uint8).expand(H0, W0)
    image = torch.stack([columns * 3, torch.full_like(columns, 100), torch.full_like(columns, 150)])
    return image, columns.clone()


def draws(path: str, n: int, frame=None, **augmentation) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``n`` augmented copies of ``frame`` (default: the ramp frame) from one path.

    Shape:
        images (n, 3, h, w) normalised, masks (n, h, w).
    """
    image, mask = frame or ramp_frame()
    if path == "loader":
        torch.manual_seed(0)
        transform = train_preset(SIZE, **augmentation)
        pairs = [transform(tv_tensors.Image(image), tv_tensors.Mask(mask.long())) for _ in range(n)]
        return torch.stack([i for i, _ in pairs]), torch.stack([m for _, m in pairs])
    augment = DeviceAugment(image[None], mask[None], SIZE, batch_size=n, **augmentation)
    return augment.augment(torch.zeros(n, dtype=torch.long), augment.generator(0))


def geometry(masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per sample: horizontal scale (output pixels per source column), flipped, coverage, the leftmost
    source column seen, and where the frame starts in the crop (past any padding)."""
    valid = masks != IGNORE_INDEX  # (n, h, w)
    row = masks[:, SIZE[0] // 2]  # the middle row always holds frame pixels
    scales, flipped, left, start = [], [], [], []
    for one in row:
        ids = one[one != IGNORE_INDEX].float()
        scales.append(len(ids) / (ids.max() - ids.min() + 1))
        flipped.append(float(ids[0] > ids[-1]))
        left.append(ids.min())
        start.append((one != IGNORE_INDEX).float().argmax())
    return {
        "scale": torch.stack(scales),
        "flip": torch.tensor(flipped),
        "coverage": valid.float().mean((1, 2)),
        "left": torch.stack(left),
        "start": torch.stack(start).float(),
    }


def test_both_paths_draw_the_same_distribution_of_scale_flip_and_crop():
    augmentation = dict(scale=(0.75, 1.5), hflip=0.5, jitter=0.0)
    loader = geometry(draws("loader", 400, **augmentation)[1])
    device = geometry(draws("device", 400, **augmentation)[1])
    # Short side 22..45 of 60 (round(30 * 0.75) to round(30 * 1.5)): width 29..60 of 80 columns
    for stats in (loader, device):
        assert 29 / W0 - 0.02 <= stats["scale"].min() < 0.45 and 0.7 < stats["scale"].max() <= 60 / W0 + 0.02
        assert 0.42 < stats["flip"].mean() < 0.58
        assert (stats["coverage"] < 1).any() and (stats["coverage"] == 1).any()  # some crops padded
    quantiles = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9])
    torch.testing.assert_close(
        device["scale"].quantile(quantiles), loader["scale"].quantile(quantiles), atol=0.04, rtol=0
    )
    assert abs(device["flip"].mean() - loader["flip"].mean()) < 0.1
    assert abs(device["coverage"].mean() - loader["coverage"].mean()) < 0.03
    assert abs((device["coverage"] < 1).float().mean() - (loader["coverage"] < 1).float().mean()) < 0.08
    assert abs(device["left"].mean() - loader["left"].mean()) < 2.0  # crop offsets, in source columns
    padded = lambda stats: stats["start"][stats["coverage"] < 1]  # noqa: E731
    torch.testing.assert_close(  # a narrow frame lies anywhere in its padding, not always centred
        padded(device).quantile(quantiles), padded(loader).quantile(quantiles), atol=2.0, rtol=0
    )


def test_both_paths_draw_the_same_distribution_of_brightness():
    """On a constant grey frame uncropped, contrast and saturation change nothing: what is left is b."""
    augmentation = dict(scale=(1.0, 1.0), hflip=0.0, jitter=0.2)
    grey_frame = torch.full((3, H0, W0), 100, dtype=torch.uint8), torch.zeros(H0, W0, dtype=torch.uint8)
    factors = {}
    for path in ("loader", "device"):
        images, _ = draws(path, 400, grey_frame, **augmentation)
        grey = denormalize(images)[:, 1]  # 100 / 255 times b
        factors[path] = grey.mean((1, 2)) / (100 / 255)
        # within [0.8, 1.2]; torchvision rounds to uint8 after each of its three steps
        assert 0.76 < factors[path].min() < 0.83 and 1.17 < factors[path].max() < 1.23
    quantiles = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9])
    torch.testing.assert_close(
        factors["device"].quantile(quantiles), factors["loader"].quantile(quantiles), atol=0.03, rtol=0
    )


@pytest.mark.parametrize("hflip", [0.0, 1.0])
def test_image_and_mask_move_together_and_padding_is_void(hflip):
    images, masks = draws("device", 64, scale=(0.5, 1.5), hflip=hflip, jitter=0.0)
    red = denormalize(images)[:, 0] * 255 / 3  # the source column the image pixel came from
    valid = masks != IGNORE_INDEX
    # On a ramp, bilinear (image) and PyTorch's "nearest" (mask, what v2 uses) differ by up to
    # (r + 1) / 2 source columns at a down-scaling by r (here r <= 4): as much as train_preset's
    loader_images, loader_masks = draws("loader", 64, scale=(0.5, 1.5), hflip=hflip, jitter=0.0)
    loader_valid = loader_masks != IGNORE_INDEX
    loader_gap = (denormalize(loader_images)[:, 0] * 255 / 3 - loader_masks)[loader_valid].abs().max()
    assert (red[valid] - masks[valid].float()).abs().max() <= max(2.5, loader_gap + 0.01)
    # Padded pixels: void in the mask, black (0 before normalising) in the image
    assert (~valid).any()
    torch.testing.assert_close(red[~valid], torch.zeros_like(red[~valid]), atol=1e-4, rtol=0)
    direction = (masks[:, SIZE[0] // 2, -1].float() - masks[:, SIZE[0] // 2, 0].float()).sign()
    clean = (valid[:, SIZE[0] // 2, 0] & valid[:, SIZE[0] // 2, -1]) & (direction != 0)
    assert (direction[clean] == (-1 if hflip else 1)).all()


def test_at_scale_one_without_flip_or_jitter_the_frame_comes_back_unchanged():
    image, mask = ramp_frame()
    augment = DeviceAugment(image[None], mask[None], (H0, W0), batch_size=1, scale=(1, 1), hflip=0, jitter=0)
    out_image, out_mask = augment.augment(torch.zeros(1, dtype=torch.long), augment.generator(0))
    torch.testing.assert_close(out_mask[0], mask.long(), rtol=0, atol=0)
    expected = TF.normalize(image.float() / 255, MEAN, STD)
    torch.testing.assert_close(out_image[0], expected)


def test_both_paths_read_one_description_and_follow_a_change_of_it():
    image, mask = ramp_frame()
    plain = Augmentation((H0, W0), crop=(H0, W0 // 2), scale=(1, 1), hflip=0, jitter=0)
    outputs = {}
    for name, aug in [("plain", plain), ("flipped", replace(plain, hflip=1.0))]:
        _, loader_mask = train_preset(aug)(tv_tensors.Image(image), tv_tensors.Mask(mask.long()))
        augment = DeviceAugment(image[None], mask[None], aug, batch_size=1)
        _, device_mask = augment.augment(torch.zeros(1, dtype=torch.long), augment.generator(0))
        assert tuple(loader_mask.shape) == tuple(device_mask[0].shape) == aug.crop_size
        outputs[name] = loader_mask, device_mask[0]
    for plain_mask in outputs["plain"]:  # a half-width window of the column ramp, as it lies
        assert (plain_mask.diff(dim=-1) == 1).all()
    for flipped in outputs["flipped"]:  # the one field changed: both paths now mirror the window
        assert (flipped.diff(dim=-1) == -1).all()
    with pytest.raises(TypeError, match="inside the Augmentation"):
        DeviceAugment(image[None], mask[None], plain, batch_size=1, hflip=0.5)


def test_training_builds_both_paths_from_the_configs_augmentation(monkeypatch):
    cfg = TrainConfig(data=str(SAMPLE), batch_size=2, image_size=(48, 64), scale=(0.75, 1.5), hflip=0.25)
    images, masks = torch.zeros(3, 3, 48, 64, dtype=torch.uint8), torch.zeros(3, 48, 64, dtype=torch.uint8)
    monkeypatch.setattr(training, "preload_split", lambda *_: (images, masks))
    augment = training.build_device_augment(CamVid(SAMPLE, "train"), cfg, torch.device("cpu"))
    assert augment.augmentation == training.train_augmentation(cfg)
    assert augment.augmentation == Augmentation((48, 64), scale=(0.75, 1.5), hflip=0.25, jitter=0.0)
    assert augment.short_range == (36, 72) and augment.hflip == 0.25


def test_color_jitter_is_torchvisions_brightness_contrast_saturation_in_turn():
    """Where no step clips (mid-grey pixels, factors within 0.2 of 1), the one affine map is exact."""
    torch.manual_seed(0)
    images = torch.randint(70, 150, (4, 3, 20, 30), dtype=torch.uint8)
    factors = torch.tensor([[1.1, 0.9, 1.2], [0.85, 1.15, 0.8], [1.0, 1.0, 1.0], [1.2, 1.2, 1.2]])
    augment = DeviceAugment(images, torch.zeros(4, 20, 30, dtype=torch.uint8), (20, 30), batch_size=4)
    ours = augment._color_jitter(images, factors)
    for one, (b, c, s), expected in zip(images, factors.tolist(), ours, strict=True):
        x = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(one / 255, b), c), s)
        torch.testing.assert_close(expected, x, atol=1e-5, rtol=0)


def test_batches_depend_only_on_the_seed_and_the_epoch():
    images, masks = preload_split(CamVid(SAMPLE, "train"))
    make = lambda seed: DeviceAugment(images, masks, (48, 64), batch_size=2, seed=seed, scale=(0.75, 1.5))  # noqa: E731
    first = list(make(0).epoch(3))
    again = list(make(0).epoch(3))
    assert len(first) == len(make(0).epoch(0)) == 2  # 5 frames, batch 2, the partial batch dropped
    for (a, ma), (b, mb) in zip(first, again, strict=True):
        assert torch.equal(a, b) and torch.equal(ma, mb)
    assert not torch.equal(first[0][0], next(iter(make(0).epoch(4)))[0])
    assert not torch.equal(first[0][0], next(iter(make(1).epoch(3)))[0])
    assert len(DeviceAugment(images, masks, (48, 64), batch_size=2, drop_last=False).epoch(0)) == 3


def test_masks_hold_only_the_frames_class_ids_or_void():
    dataset = CamVid(SAMPLE, "train", class_set="camvid11")
    images, masks = preload_split(dataset)
    augment = DeviceAugment(images, masks, (90, 120), batch_size=5, scale=(0.5, 2.0))
    _, out = next(iter(augment.epoch(0)))
    assert out.dtype == torch.int64 and out.shape == (5, 90, 120)
    allowed = set(masks.unique().tolist()) | {IGNORE_INDEX}
    assert set(out.unique().tolist()) <= allowed


def test_preload_split_holds_every_frame_as_uint8():
    dataset = CamVid(SAMPLE, "val")
    images, masks = preload_split(dataset)
    assert images.dtype == masks.dtype == torch.uint8
    assert images.shape == (len(dataset), 3, 720, 960) and masks.shape == (len(dataset), 720, 960)
    image, mask = dataset.load_frame(1)
    assert torch.equal(images[1], image) and torch.equal(masks[1].long(), mask)


def test_preload_split_refuses_frames_of_different_sizes_by_name(monkeypatch):
    dataset = CamVid(SAMPLE, "val")
    load = dataset.load_frame
    monkeypatch.setattr(dataset, "load_frame", lambda i: (load(i)[0], load(i)[1][:-2]) if i == 1 else load(i))
    with pytest.raises(CamVidError, match=r"0016E5_04740.png is 960x718 but .*0006R0_f01050.png is 960x720"):
        preload_split(dataset)


@pytest.mark.parametrize(
    ("height", "width", "short", "expected"), [(720, 960, 270, (270, 360)), (80, 60, 45, (60, 45))]
)
def test_resized_size_is_v2_resize_of_the_short_side(height, width, short, expected):
    assert resized_size(height, width, short) == expected
    assert tuple(TF.resize(torch.zeros(1, height, width), [short]).shape[-2:]) == expected


def _tiny(out, **overrides) -> TrainConfig:
    """A seconds-long run on the bundled sample with batches augmented on the device (the CPU here)."""
    base = dict(data=str(SAMPLE), out=str(out), epochs=2, batch_size=2, image_size=(48, 64), base_channels=4,
                depth=2, num_workers=0, max_eval_images=2, scale=(0.75, 1.5), hflip=0.5, jitter=0.2,
                schedule="poly", data_path="device")  # fmt: skip
    return replace(TrainConfig(), **{**base, **overrides})


@pytest.mark.slow
def test_a_run_on_device_batches_resumes_exactly(tmp_path):
    full = fit(_tiny(tmp_path / "full"), log=lambda *_: None)

    def killed_after_first_epoch(line):
        if line.startswith("epoch 1/"):
            raise KeyboardInterrupt  # as if killed right after the epoch's checkpoint

    with pytest.raises(KeyboardInterrupt):
        fit(_tiny(tmp_path / "part"), log=killed_after_first_epoch)
    resumed = fit(_tiny(tmp_path / "part"), resume=True, log=lambda *_: None)
    strip = lambda history: [{k: v for k, v in h.items() if k != "seconds"} for h in history]  # noqa: E731
    assert strip(resumed) == strip(full)
    loader_run = fit(_tiny(tmp_path / "loader", data_path="loader", epochs=1), log=lambda *_: None)
    assert loader_run[0]["train_loss"] != full[0]["train_loss"]  # the other path: other augmentations


@pytest.mark.parametrize(
    ("data_path", "device", "expected"),
    [("auto", "cuda", True), ("auto", "cpu", False), ("device", "cpu", True), ("loader", "cuda", False)],
)
def test_auto_augments_on_the_device_on_cuda_only(data_path, device, expected):
    assert uses_device_augment(TrainConfig(data_path=data_path), torch.device(device)) is expected


def test_a_bad_data_path_is_a_clear_error():
    with pytest.raises(ValueError, match="--data-path: must be auto, loader or device, got 'gpu'"):
        TrainConfig(data_path="gpu")  # refused when made, before any work
