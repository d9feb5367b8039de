"""camvid_utils.check: what check_data warns about in a folder of your own, and what it calls a problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from own_folders import (
    FRAMES,
    ROAD,
    make_folder,
    tiny_ids,
    tiny_table,
)
from PIL import Image

from camvid_utils.check import NEAR_COPY, check_data, near_copies
from conftest import write_png


def test_a_class_absent_from_train_is_a_problem_and_from_val_a_warning(tmp_path):
    ids = tiny_ids()
    root = make_folder(
        tmp_path / "absent",
        tiny_table(),
        {
            "train": {"t0": Image.fromarray(np.where(ids == 2, 1, ids).astype(np.uint8))},
            "val": {"v0": Image.fromarray(ids)},
        },
    )
    report = check_data(root)
    assert not report.ok and any("['car'] have no pixels in train" in p for p in report.problems)
    root2 = make_folder(
        tmp_path / "absent_val",
        tiny_table(),
        {
            "train": {"t0": Image.fromarray(ids)},
            "val": {"v0": Image.fromarray(np.where(ids == 2, 1, ids).astype(np.uint8))},
        },
    )
    report = check_data(root2)
    assert report.ok and any("['car'] have no pixels in val" in w for w in report.warnings)


def test_near_copies_across_the_split_are_warned_about(tmp_path):
    stem, image, ids = FRAMES["train"][0]
    shifted = np.roll(image, 1, axis=1)  # the next frame of a video, nearly
    masks = {
        "train": {stem: Image.fromarray(np.where(ids == ROAD, 255, 0).astype(np.uint8))},
        "val": {"copy": Image.fromarray(np.where(ids == ROAD, 255, 0).astype(np.uint8))},
    }
    table = "value,name\n0,background\n1,road\n"
    root = make_folder(tmp_path / "leak", table, masks, {stem: image, "copy": shifted})
    report = check_data(root)
    assert report.ok and any(
        "near copies of training frames" in w and "copy.png" in w for w in report.warnings
    )
    # frames of different sequences are not near copies
    far = [image for _, image, _ in FRAMES["val"]]
    for i, picture in enumerate(far):
        write_png(tmp_path / "far" / f"{i}.png", picture)
    write_png(tmp_path / "near" / "0.png", image)
    assert near_copies([tmp_path / "near" / "0.png"], sorted((tmp_path / "far").glob("*.png"))) == []
    assert NEAR_COPY < 0.1


def _phone_folder(root, mask_drawn_on: str):
    """One train and one val pair whose 24x32 photos are stored sideways with EXIF orientation 6 (shown
    upright as 32x24); the mask is drawn on the photo as shown ("upright") or on its stored pixels."""
    ids = tiny_ids()  # (24, 32): the picture as shown, upright
    stored = np.ascontiguousarray(np.rot90(ids, k=1))  # (32, 24): what the camera wrote
    masks = {split: {stem: Image.fromarray(ids if mask_drawn_on == "upright" else stored)}
             for split, stem in (("train", "t0"), ("val", "v0"))}  # fmt: skip
    root = make_folder(root, tiny_table(), masks)
    for split, stem in (("train", "t0"), ("val", "v0")):
        path = root / "images" / split / f"{stem}.png"
        grey = (stored.astype(np.int64) * 40 % 256).astype(np.uint8)  # each class its own grey
        photo = Image.fromarray(np.repeat(grey[..., None], 3, axis=2))
        exif = photo.getexif()
        exif[0x0112] = 6  # shown turned a quarter clockwise: the stored 24x32 is shown 32x24
        photo.save(path, exif=exif.tobytes())
    return root


def test_a_phone_photo_with_its_mask_drawn_upright_checks_and_loads_aligned(tmp_path):
    from camvid_utils.data import CamVid

    root = _phone_folder(tmp_path / "upright", "upright")
    report = check_data(root, leak_check=False)
    assert report.ok, report.problems
    assert any("EXIF orientation tag" in w for w in report.warnings)
    image, mask = CamVid(root, "train").load_frame(0)
    assert tuple(image.shape[-2:]) == tuple(mask.shape) == (24, 32)
    # the photo's grey levels were painted from the ids: upright photo and mask line up pixel for pixel
    painted = torch.from_numpy(tiny_ids().astype(np.int64) * 40 % 256)  # as _phone_folder painted it
    assert torch.equal(image[0].long(), painted)
    assert torch.equal(mask, torch.from_numpy(tiny_ids().astype(np.int64)))


def test_a_mask_drawn_on_the_stored_pixels_is_one_problem_that_says_why(tmp_path):
    from camvid_utils.data import CamVid, CamVidError

    root = _phone_folder(tmp_path / "stored", "stored")
    report = check_data(root, leak_check=False)
    assert not report.ok
    assert any("shown turned by its EXIF orientation tag" in p for p in report.problems), report.problems
    with pytest.raises(CamVidError, match="drawn on the stored pixels"):
        CamVid(root, "train").load_frame(0)


def test_check_data_gives_the_class_weights_train_uses(tmp_path):
    from own_folders import camvid_folder

    from camvid_utils.data import CamVid, pixel_counts
    from camvid_utils.losses import class_weights

    root = camvid_folder(tmp_path / "palette", "palette")
    report = check_data(root, leak_check=False)
    counts, totals = pixel_counts(CamVid(root, "train"), with_image_totals=True)  # what train computes
    for method in ("inverse_sqrt", "median_frequency"):
        expected = class_weights(counts, method, image_counts=totals)
        torch.testing.assert_close(torch.tensor(report.weights[method]), expected)


def test_a_truncated_photo_is_a_problem_that_names_it(tmp_path):
    from own_folders import road_folder

    root = road_folder(tmp_path / "road")
    photo = sorted((root / "images" / "train").iterdir())[0]
    data = photo.read_bytes()
    photo.write_bytes(data[: len(data) * 2 // 3])  # a copy that stopped two thirds of the way
    for leak_check in (True, False):
        report = check_data(root, leak_check=leak_check)
        assert not report.ok
        assert any(str(photo) in p and "truncated" in p for p in report.problems), report.problems


def test_a_binary_mask_with_no_foreground_is_not_a_second_format(tmp_path):
    from own_folders import road_folder

    root = road_folder(tmp_path / "road")
    first = sorted((root / "masks" / "train").iterdir())[0]
    Image.fromarray(np.zeros((8, 8), np.uint8)).resize(Image.open(first).size).save(first)  # no road at all
    report = check_data(root, leak_check=False)
    assert report.format == "binary" and not any("formats" in p for p in report.problems), report.problems


def test_check_data_warns_when_whole_groups_land_far_from_the_asked_share(tmp_path):
    from own_folders import road_folder

    grouped = road_folder(
        tmp_path / "grouped", layout="one", split_json={"seed": 0, "val": 0.2, "group": "^[^_]+"}
    )
    report = check_data(grouped, leak_check=False)
    assert any("val holds 36% of the pairs where split.json asks for 20%" in w for w in report.warnings)
    frames = road_folder(tmp_path / "frames", layout="one", split_json={"seed": 0, "val": 0.2})
    assert not any("of the pairs where" in w for w in check_data(frames, leak_check=False).warnings)
