"""The data layer: both layouts decode exactly, the 32-to-11 mapping, and every bad input's error."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from camvid_utils import data
from camvid_utils.data import (
    CAMVID11_CLASSES,
    CAMVID32_TO_11,
    CamVid,
    CamVidError,
    pixel_counts,
    read_class_dict,
)
from conftest import SAMPLE, kaggle_colors, make_kaggle, make_segnet, write_png


def seed_decode(label_rgb, rows):
    """The seed's approach, as an independent oracle: one-hot by one pass per class, then argmax."""
    onehot = np.zeros(label_rgb.shape[:2] + (len(rows),), dtype=np.float64)
    for i, (_, rgb) in enumerate(rows):
        onehot[..., i] = np.all(label_rgb == np.array(rgb), axis=-1)
    return onehot.argmax(-1), onehot.sum(-1) > 0


def test_kaggle_layout_decodes_every_class_exactly(kaggle_root):
    rows = kaggle_colors()
    ds = CamVid(kaggle_root, "train")
    assert ds.layout == "kaggle" and ds.class_set == "camvid32"
    non_void = [name for name, _ in rows if name != "Void"]
    assert ds.classes == tuple(non_void) and len(ds.classes) == 31
    image, mask = ds[0]
    assert image.dtype == torch.float32 and image.shape == (3, 12, 16)
    assert 0 <= image.min() and image.max() <= 1
    assert mask.dtype == torch.int64 and mask.shape == (12, 16)
    row_ids = np.arange(12 * 16).reshape(12, 16) % 32
    expected = [non_void.index(rows[i][0]) if rows[i][0] != "Void" else 255 for i in range(32)]
    np.testing.assert_array_equal(mask.numpy(), np.array(expected)[row_ids])


def test_real_sample_matches_the_seed_decoder_pixel_for_pixel():
    rows = kaggle_colors()
    ds = CamVid(SAMPLE, "val")
    label = np.asarray(Image.open(ds.labels[0]).convert("RGB"))
    ids, known = seed_decode(label, rows)
    names = [name for name, _ in rows]
    to_ours = np.array([ds.classes.index(n) if n != "Void" else 255 for n in names])
    expected = np.where(known, to_ours[ids], 255)
    _, mask = ds[0]
    np.testing.assert_array_equal(mask.numpy(), expected)
    assert mask.shape == (720, 960)
    image, _ = ds[0]
    np.testing.assert_array_equal(
        (image * 255).round().byte().permute(1, 2, 0).numpy(), np.asarray(Image.open(ds.frames[0]))
    )


def test_files_are_sorted_and_items_follow_them(tmp_path):
    ids = np.zeros((4, 4), dtype=np.int64)
    root = make_kaggle(
        tmp_path / "k", {"train": [ids + k for k in range(3)]}
    )  # rows Animal, Archway, Bicyclist
    (root / "train" / "f000.png").rename(root / "train" / "zeta.png")
    (root / "train_labels" / "f000_L.png").rename(root / "train_labels" / "zeta_L.png")
    ds = CamVid(root, "train")
    assert [f.name for f in ds.frames] == ["f001.png", "f002.png", "zeta.png"]
    assert [lab.name for lab in ds.labels] == ["f001_L.png", "f002_L.png", "zeta_L.png"]
    firsts = [ds.classes[int(ds[i][1][0, 0])] for i in range(3)]
    assert firsts == ["Archway", "Bicyclist", "Animal"]


def test_segnet_layout_maps_unlabelled_to_void(tmp_path):
    label = (np.arange(12 * 13).reshape(12, 13) % 12).astype(np.uint8)
    root = make_segnet(tmp_path / "segnet", {"train": [label], "val": [label]})
    ds = CamVid(root, "train")
    assert ds.layout == "segnet" and ds.classes == CAMVID11_CLASSES and ds.num_classes == 11
    _, mask = ds[0]
    np.testing.assert_array_equal(mask.numpy(), np.where(label == 11, 255, label))
    with pytest.raises(CamVidError, match="SegNet 11-class layout"):
        CamVid(root, "train", class_set="camvid32")


def test_camvid11_mapping_follows_the_segnet_labels(kaggle_root):
    ds = CamVid(kaggle_root, "train", class_set="camvid11")
    assert ds.classes == CAMVID11_CLASSES and ds.num_classes == 11
    _, mask = ds[0]
    rows = kaggle_colors()
    row_ids = np.arange(12 * 16).reshape(12, 16) % 32
    got = {rows[i][0]: int(mask.numpy()[row_ids == i][0]) for i in range(32)}
    name = lambda cid: None if cid == 255 else CAMVID11_CLASSES[cid]  # noqa: E731
    assert {k: name(v) for k, v in got.items()} == CAMVID32_TO_11
    for void in (
        "Animal",
        "Child",
        "CartLuggagePram",
        "OtherMoving",
        "TrafficCone",
        "Archway",
        "Bridge",
        "Void",
    ):
        assert got[void] == 255
    assert name(got["RoadShoulder"]) == "Road"
    assert name(got["Train"]) == "Car" and name(got["Tunnel"]) == "Building"
    assert name(got["Column_Pole"]) == "Pole" and name(got["TrafficLight"]) == "SignSymbol"


def test_real_class_dict_with_stray_spaces_and_no_final_newline():
    raw = (SAMPLE / "class_dict.csv").read_bytes()
    assert not raw.endswith(b"\n") and b", " in raw  # the file really is Kaggle's quirky one
    rows = read_class_dict(SAMPLE / "class_dict.csv")
    assert len(rows) == 32 and rows[2] == ("Bicyclist", (0, 128, 192)) and rows[-2][0] == "Void"


@pytest.mark.parametrize(
    "line, lineno",
    [("Road,128,64", 3), ("Road,128,64,300", 3), ("Road,a,b,c", 3), (",1,2,3", 3), ("Sky,128,128,128", 3)],
)
def test_malformed_class_dict_names_the_line(tmp_path, line, lineno):
    path = tmp_path / "class_dict.csv"
    path.write_text(f"name,r,g,b\nSky,128,128,128\n{line}\nVoid,0,0,0\n")
    with pytest.raises(CamVidError, match=rf"class_dict.csv, line {lineno}"):
        read_class_dict(path)


def test_missing_root_and_split_say_how_to_get_data(tmp_path, kaggle_root):
    with pytest.raises(CamVidError, match=r"does not exist.*download"):
        CamVid(tmp_path / "nowhere", "train")
    with pytest.raises(CamVidError, match=r"no CamVid 'test' split.*download"):
        CamVid(kaggle_root, "test")
    with pytest.raises(CamVidError, match="split must be one of"):
        CamVid(kaggle_root, "training")


def test_frame_without_label_names_the_frame(kaggle_root):
    (kaggle_root / "train_labels" / "f001_L.png").unlink()
    ds = CamVid(kaggle_root, "train")
    with pytest.raises(CamVidError, match=r"f001.png has no label: expected .*f001_L.png"):
        ds[1]


def test_label_of_another_size_names_both_files_and_sizes(kaggle_root):
    write_png(kaggle_root / "train_labels" / "f000_L.png", np.zeros((10, 16, 3), dtype=np.uint8))
    with pytest.raises(CamVidError, match=r"f000.png is 16x12 but its label .*f000_L.png is 16x10"):
        CamVid(kaggle_root, "train")[0]


@pytest.mark.parametrize("which", ["frame", "label"])
def test_truncated_png_names_the_file(kaggle_root, which):
    path = kaggle_root / ("train/f002.png" if which == "frame" else "train_labels/f002_L.png")
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(CamVidError, match=rf"cannot decode .*{path.name}"):
        CamVid(kaggle_root, "train")[2]


def test_unknown_label_colours_become_void_with_one_warning(kaggle_root):
    path = kaggle_root / "train_labels" / "f000_L.png"
    label = np.asarray(Image.open(path)).copy()
    label[0, :5] = (1, 2, 3)
    label[1, :2] = (250, 250, 250)
    write_png(path, label)
    with pytest.warns(UserWarning) as caught:
        _, mask = CamVid(kaggle_root, "train")[0]
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "f000_L.png" in message and "7 pixels" in message
    assert "(1, 2, 3) x5" in message and "(250, 250, 250) x2" in message
    assert (mask[0, :5] == 255).all() and (mask[1, :2] == 255).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CamVid(kaggle_root, "train")[1]  # clean labels warn about nothing
    with pytest.raises(CamVidError, match=r"f000_L.png: 7 pixels .* strict=False"):
        CamVid(kaggle_root, "train", strict=True)[0]


def test_frames_without_any_labels_folder(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(CamVidError, match="has frames but no labels"):
        CamVid(tmp_path, "train")


def test_pixel_counts_skip_void(tmp_path):
    label = np.array([[0, 0, 11], [3, 3, 3]], dtype=np.uint8)
    root = make_segnet(tmp_path, {"train": [label, label]})
    counts = pixel_counts(CamVid(root, "train"))
    assert counts.tolist() == [4, 0, 0, 6] + [0] * 7
    other = np.array([[3, 3, 3], [3, 11, 11]], dtype=np.uint8)  # no class 0 here
    root = make_segnet(tmp_path / "two", {"train": [label, other]})
    counts, totals = pixel_counts(CamVid(root, "train"), with_image_totals=True)
    assert counts.tolist() == [2, 0, 0, 7] + [0] * 7
    assert totals.tolist() == [6, 0, 0, 12] + [0] * 7  # class 0 appears in one 6-pixel image


def test_bundled_sample_is_complete_and_small():
    total = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert total <= 12 * 2**20
    sizes = {split: len(CamVid(SAMPLE, split)) for split in ("train", "val", "test")}
    assert sizes == {"train": 5, "val": 3, "test": 3}
    assert (SAMPLE.parent / "README.md").read_text().count("Brostow") >= 1


# ---- issue 12: every PNG mode Pillow reads, SegNet ids outside the classes, an installed package ----


def _segnet_with(tmp_path, image: Image.Image):
    """A SegNet folder whose one training label is ``image`` (saved as PNG in its own mode)."""
    root = make_segnet(tmp_path / "segnet", {"train": [np.zeros((4, 6), np.uint8)]})
    image.save(root / "trainannot" / "s000.png")
    return CamVid(root, "train")


IDS = np.array([[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11], [0, 0, 1, 1, 2, 2], [3, 3, 4, 4, 5, 5]])
EXPECTED = np.where(IDS == 11, 255, IDS)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Image.fromarray(IDS.astype(np.uint16)),  # 16-bit grey
        lambda: Image.fromarray(IDS.astype(np.uint8), "L").convert("LA"),  # grey + alpha
        lambda: Image.fromarray(np.repeat(IDS.astype(np.uint8)[..., None], 3, 2)),  # grey saved as RGB
        lambda: Image.fromarray(np.repeat(IDS.astype(np.uint8)[..., None], 4, 2)).convert("RGBA"),
        lambda: _palette(IDS),  # palette indices are the ids
    ],
    ids=["16-bit", "LA", "RGB", "RGBA", "palette"],
)
def test_segnet_labels_in_every_integer_mode_give_the_same_ids(tmp_path, make):
    ds = _segnet_with(tmp_path, make())
    np.testing.assert_array_equal(ds.load_mask(0), EXPECTED)


def _palette(ids):
    img = Image.fromarray(ids.astype(np.uint8), "P")
    img.putpalette([v for i in range(256) for v in (i, 255 - i, 7)])
    return img


def test_a_one_bit_segnet_label_reads_as_ids_0_and_1(tmp_path):
    bits = IDS % 2 == 1
    ds = _segnet_with(tmp_path, Image.fromarray(bits))
    np.testing.assert_array_equal(ds.load_mask(0), bits.astype(np.uint8))


def test_a_colour_segnet_label_is_refused_by_name(tmp_path):
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 128
    with pytest.raises(CamVidError, match=r"s000\.png is a RGB image; a SegNet label holds one class id"):
        _segnet_with(tmp_path, Image.fromarray(rgb)).load_mask(0)


@pytest.mark.parametrize("bad, dtype", [(40, np.uint8), (300, np.uint16)])
def test_segnet_ids_outside_the_classes_are_void_with_one_warning_naming_them(tmp_path, bad, dtype):
    label = IDS.copy()
    label[0, :2] = bad
    ds = _segnet_with(tmp_path, Image.fromarray(label.astype(dtype)))
    with pytest.warns(
        UserWarning, match=rf"s000\.png: 2 pixels hold ids that are not SegNet classes.*{bad} x2"
    ):
        mask = ds.load_mask(0)
    expected = EXPECTED.copy()
    expected[0, :2] = 255
    np.testing.assert_array_equal(mask, expected)
    with pytest.raises(CamVidError, match=rf"{bad} x2"):
        CamVid(ds.root, "train", strict=True).load_mask(0)


def test_segnet_void_255_and_unlabelled_11_are_silent(tmp_path):
    label = IDS.copy()
    label[0, 0] = 255
    ds = _segnet_with(tmp_path, Image.fromarray(label.astype(np.uint8)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ds.load_mask(0)[0, 0] == 255


RGB = np.random.default_rng(3).integers(0, 256, (4, 6, 3), dtype=np.uint8)
GREY16 = np.arange(24, dtype=np.uint16).reshape(4, 6) * 2700  # up to 62100


@pytest.mark.parametrize(
    "image, expected",
    [
        (Image.fromarray(GREY16), np.repeat((GREY16 >> 8).astype(np.uint8)[..., None], 3, 2)),
        (
            Image.fromarray(GREY16 > 30000),
            np.repeat(((GREY16 > 30000) * 255).astype(np.uint8)[..., None], 3, 2),
        ),
        (Image.fromarray(RGB[..., 0], "L").convert("LA"), np.repeat(RGB[..., :1], 3, 2)),
        (Image.fromarray(np.dstack([RGB, np.full((4, 6), 9, np.uint8)]), "RGBA"), RGB),
        (Image.fromarray(RGB).quantize(256, dither=Image.Dither.NONE), None),
    ],
    ids=["16-bit", "1-bit", "LA", "RGBA", "palette"],
)
def test_frames_in_every_mode_read_as_8_bit_rgb(tmp_path, image, expected):
    ds = _segnet_with(tmp_path, Image.fromarray(IDS.astype(np.uint8)))
    image.save(ds.frames[0])
    if expected is None:  # a palette frame reads through its palette
        expected = np.asarray(Image.open(ds.frames[0]).convert("RGB"))
        assert np.abs(expected.astype(int) - RGB).max() < 40
    np.testing.assert_array_equal(ds.load_image(0), expected)
    assert ds.load_image(0).dtype == np.uint8


def test_kaggle_labels_saved_as_palette_or_rgba_decode_like_rgb(kaggle_root):
    rgb_mask = CamVid(kaggle_root, "train").load_mask(0)
    path = kaggle_root / "train_labels" / "f000_L.png"
    rgb = np.asarray(Image.open(path))
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), "RGBA").save(path)
    np.testing.assert_array_equal(CamVid(kaggle_root, "train").load_mask(0), rgb_mask)
    Image.fromarray(rgb).quantize(64, method=Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE).save(path)
    assert Image.open(path).mode == "P"
    np.testing.assert_array_equal(CamVid(kaggle_root, "train").load_mask(0), rgb_mask)


def test_duplicate_class_names_are_refused_naming_both_rows(tmp_path):
    path = tmp_path / "class_dict.csv"
    path.write_text("name,r,g,b\nSky,128,128,128\nRoad,128,64,128\nSky,1,2,3\n")
    with pytest.raises(
        CamVidError, match=r"class_dict.csv, line 4: class 'Sky' is already defined on line 2"
    ):
        read_class_dict(path)


def _jpeg_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_check_not_jpeg_names_the_file(tmp_path):
    good = write_png(tmp_path / "ok.png", np.zeros((4, 6), np.uint8))
    data.check_not_jpeg(good)  # a PNG passes
    bad = tmp_path / "bad.png"
    bad.write_bytes(_jpeg_bytes(np.zeros((4, 6, 3), np.uint8)))
    with pytest.raises(CamVidError, match=r"bad\.png holds JPEG bytes.*Save the label as PNG"):
        data.check_not_jpeg(bad)


def test_segnet_label_saved_as_jpeg_is_an_error_naming_it(tmp_path):
    """JPEG's ringing turns ids into other valid ids: silently wrong, so refused outright."""
    ds = _segnet_with(tmp_path, Image.fromarray(IDS.astype(np.uint8)))
    ds.labels[0].write_bytes(_jpeg_bytes(IDS.astype(np.uint8)))
    with pytest.raises(CamVidError, match=r"s000\.png holds JPEG bytes"):
        ds.load_mask(0)


def test_kaggle_labels_saved_as_jpeg_stop_with_one_error_naming_them(kaggle_root):
    for name in ("f000_L.png", "f002_L.png"):
        path = kaggle_root / "train_labels" / name
        path.write_bytes(_jpeg_bytes(np.asarray(Image.open(path).convert("RGB"))))
    with pytest.raises(CamVidError, match=r"f000_L\.png holds JPEG bytes"):
        CamVid(kaggle_root, "train")[0]
    with pytest.raises(CamVidError, match=r"2 of 3 train labels .*f000_L\.png, .*f002_L\.png"):
        data.check_labels(CamVid(kaggle_root, "train"))


def _oriented(array: np.ndarray, orientation: int) -> Image.Image:
    img = Image.fromarray(array)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.info["exif"] = exif.tobytes()
    return img


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_frames_honour_the_exif_orientation_tag(tmp_path, suffix):
    """Stored sideways with Orientation 6 (rotate 90 clockwise to view): read upright."""
    upright = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    stored = np.rot90(upright, 1).copy()  # (6, 4, 3): what a phone writes, tagged 6
    path = tmp_path / f"photo{suffix}"
    img = _oriented(stored, 6)
    img.save(path, exif=img.info["exif"], **({"quality": 100, "subsampling": 0} if suffix == ".jpg" else {}))
    with Image.open(path) as opened:
        got = data.to_rgb(opened, path)
    assert got.shape == upright.shape
    if suffix == ".png":
        np.testing.assert_array_equal(got, upright)
    else:
        assert np.abs(got.astype(int) - upright).mean() < 8


def test_training_frames_and_labels_honour_the_exif_orientation_tag(tmp_path):
    upright = IDS.astype(np.uint8)  # (4, 6)
    ds = _segnet_with(tmp_path, Image.fromarray(upright))
    for path, array in ((ds.frames[0], ds.load_image(0)), (ds.labels[0], upright)):
        img = _oriented(np.rot90(array, 1).copy(), 6)
        img.save(path, exif=img.info["exif"])
    image, mask = ds.load_frame(0)
    assert tuple(image.shape) == (3, 4, 6)
    np.testing.assert_array_equal(mask.numpy(), EXPECTED)


def test_a_utf16_class_dict_reads_and_a_latin1_one_is_refused_naming_it(tmp_path):
    path = tmp_path / "class_dict.csv"
    path.write_bytes("name,r,g,b\nSky,128,128,128\nRoad,128,64,128\n".encode("utf-16"))
    assert read_class_dict(path) == [("Sky", (128, 128, 128)), ("Road", (128, 64, 128))]
    path.write_bytes("name,r,g,b\nStraße,1,2,3\n".encode("latin-1"))
    with pytest.raises(CamVidError, match=r"class_dict.csv is not UTF-8 text.*save it as a UTF-8 CSV"):
        read_class_dict(path)


def test_frames_with_upper_case_suffixes_are_found(tmp_path):
    root = make_segnet(tmp_path / "segnet", {"train": [IDS.astype(np.uint8)]})
    (root / "train" / "s000.png").rename(root / "train" / "s000.PNG")
    (root / "trainannot" / "s000.png").rename(root / "trainannot" / "s000.PNG")
    ds = CamVid(root, "train")
    assert len(ds) == 1 and ds.load_mask(0).shape == (4, 6)


def test_kaggle_frames_with_upper_case_suffixes_find_their_labels(kaggle_root):
    for path in sorted((kaggle_root / "train").glob("*.png")):
        path.rename(path.with_suffix(".PNG"))
    ds = CamVid(kaggle_root, "train")
    assert len(ds) == 3 and ds.load_mask(0).shape == (12, 16)


def test_read_image_turns_a_phone_photo_upright_and_names_a_bad_file(tmp_path):
    from camvid_utils.data import read_image

    stored = np.zeros((4, 6, 3), np.uint8)
    stored[0, :, 0] = 255  # a red top row, as stored
    path = tmp_path / "phone.jpg"
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = 6  # shown turned a quarter clockwise: the top row becomes the right column
    img.save(path, exif=exif.tobytes(), quality=100, subsampling=0)
    image = read_image(path)
    assert image.dtype == torch.uint8 and tuple(image.shape) == (3, 6, 4)
    assert image[0, :, -1].min() > 200 and image[0, :, 0].max() < 60
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(CamVidError, match=r"bad\.png"):
        read_image(tmp_path / "bad.png")
