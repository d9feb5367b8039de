"""camvid_utils.check: what check_data warns about in a folder of your own, and what it calls a problem."""

from __future__ import annotations

import numpy as np
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
