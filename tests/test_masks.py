"""camvid_utils.masks: every mask format loads as the same ids; a bad mask or class table names the fix."""

from __future__ import annotations

import numpy as np
import pytest
from own_folders import (
    BAD,
    FRAMES,
    ROAD,
    TINY_RGB,
    bad_case,
    camvid_folder,
    make_folder,
    road_folder,
    tiny_ids,
    tiny_table,
)

from camvid_utils.check import check_data
from camvid_utils.data import CAMVID11_CLASSES, CAMVID11_COLORS, CamVid, CamVidError
from camvid_utils.masks import MaskError, read_class_table


@pytest.mark.parametrize("fmt", ["palette", "rgb", "ids8", "ids16"])
def test_every_format_loads_as_the_same_class_ids_pixel_for_pixel(fmt, tmp_path):
    root = camvid_folder(tmp_path / fmt, fmt)
    for split, items in FRAMES.items():
        ds = CamVid(root, split)
        assert ds.layout == "folder" and ds.classes == CAMVID11_CLASSES and ds.colors == CAMVID11_COLORS
        assert [p.stem for p in ds.frames] == sorted(stem for stem, _, _ in items)
        for i, (_, image, ids) in enumerate(sorted(items)):
            got_image, got_mask = ds.load_frame(i)
            np.testing.assert_array_equal(got_mask.numpy(), ids)
            np.testing.assert_array_equal(got_image.permute(1, 2, 0).numpy(), image)
    report = check_data(root)
    assert report.ok, str(report)
    assert report.format == fmt


def test_binary_0_255_masks_load_as_0_and_1(tmp_path):
    root = road_folder(tmp_path / "road")
    ds = CamVid(root, "val")
    for i, (_, _, ids) in enumerate(sorted(FRAMES["val"])):
        np.testing.assert_array_equal(ds.load_mask(i), (ids == ROAD).astype(np.uint8))
    assert check_data(root).format == "binary"


@pytest.mark.parametrize("name", list(BAD))
def test_each_bad_mask_gives_its_error_naming_the_file(name, tmp_path):
    root = bad_case(name, tmp_path / "bad")
    if name != "rgb without colours":  # there no mask can load
        CamVid(root, "train").load_mask(0)  # the good split loads
    with pytest.raises(CamVidError) as caught:
        ds = CamVid(root, "val")
        for i in range(len(ds)):
            ds.load_frame(i)
    message = str(caught.value)
    for needle in BAD[name]:
        assert needle in message, f"{needle!r} not in: {message}"


@pytest.mark.parametrize(
    "text, needle",
    [
        ("name,r,g,b\nsky,1,2,3\n", "header"),
        ("value,name\n0,sky\n0,road\n", "value 0 is given twice"),
        ("value,name,r,g,b\n0,sky,1,2,3\n1,road\n", "['road'] have no r,g,b"),
        ("value,name\n0,sky\n255,void\n256,Void\n", "second void"),
        ("value,name\nzero,sky\n", "whole numbers"),
        ("value,name\n255,void\n", "lists no classes"),
        ("value,name,r,g,b\n0,sky,1,2,3\n1,road,1,2,3\n", "share a colour"),
        ("value,name\n0,Road\n1,Road\n", "line 3: class 'Road' is already listed as 'Road'"),
        (
            "value,name\n0,Road\n1,road \n",
            "already listed as 'Road' (names are compared without letter case)",
        ),
    ],
)
def test_a_bad_class_table_names_its_line(text, needle, tmp_path):
    path = tmp_path / "classes.csv"
    path.write_text(text)
    with pytest.raises(MaskError, match=None) as caught:
        read_class_table(path)
    assert needle in str(caught.value) and str(path) in str(caught.value)


def test_a_table_without_colours_draws_with_distinct_default_colours(tmp_path):
    path = tmp_path / "classes.csv"
    path.write_text("value,name\n0,background\n1,road\n2,car\n")
    table = read_class_table(path)
    assert table.colors is None and len(set(table.display_colors())) == 3


@pytest.mark.parametrize("void_row", [True, False])
def test_transparent_pixels_of_an_rgba_mask_are_void_or_refused(void_row, tmp_path):
    from PIL import Image

    ids = tiny_ids()
    rgba = np.zeros((*ids.shape, 4), np.uint8)
    rgba[..., :3] = TINY_RGB[np.where(ids == 255, 0, ids)]
    rgba[..., 3] = 255
    rgba[:6, :10, 3] = 0  # "not labelled": transparent, over sky-coloured pixels
    table = tiny_table() if void_row else tiny_table().replace("255,void,0,0,0\n", "")
    root = make_folder(tmp_path / "rgba", table, {"train": {"t0": Image.fromarray(rgba, "RGBA")}})
    data = CamVid(root, "train")
    if not void_row:
        with pytest.raises(MaskError, match=r"t0\.png has 60 transparent pixels.*add a void row"):
            data.load_mask(0)
        return
    expected = np.where(ids == 255, 0, ids)
    expected[:6, :10] = 255
    np.testing.assert_array_equal(data.load_mask(0), expected)
