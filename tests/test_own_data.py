"""A folder of your own: every mask format loads as the same ids, and every bad mask says what is wrong."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from camvid_utils.check import NEAR_COPY, check_data, near_copies
from camvid_utils.cli import main
from camvid_utils.data import CAMVID11_CLASSES, CAMVID11_COLORS, SPLITS, CamVid, CamVidError
from camvid_utils.folder import group_of, split_pairs, split_stems
from camvid_utils.masks import MaskError, read_class_table
from conftest import SAMPLE, write_png

ROAD = CAMVID11_CLASSES.index("Road")
VOID_RGB = (0, 0, 0)


def sample_frames(step: int = 8) -> dict[str, list[tuple[str, np.ndarray, np.ndarray]]]:
    """The bundled frames at 1/``step`` size (every ``step``-th pixel): (stem, RGB image, 11-class ids)."""
    out = {}
    for split in SPLITS:
        ds = CamVid(SAMPLE, split, class_set="camvid11")
        out[split] = [
            (path.stem, ds.load_image(i)[::step, ::step].copy(), ds.load_mask(i)[::step, ::step].copy())
            for i, path in enumerate(ds.frames)
        ]
    return out


FRAMES = sample_frames()


def table_11(fmt: str) -> str:
    """The class table of the 11 classes for masks in ``fmt`` (16-bit values spread over 0..65535)."""
    rows = ["value,name,r,g,b"]
    for i, (name, rgb) in enumerate(zip(CAMVID11_CLASSES, CAMVID11_COLORS, strict=True)):
        value = 1000 * i + 7 if fmt == "ids16" else i
        rows.append(f"{value},{name}," + ",".join(map(str, rgb)))
    rows.append(("65535" if fmt == "ids16" else "255") + ",void,0,0,0")
    return "\n".join(rows) + "\n"


def encode(ids: np.ndarray, fmt: str) -> Image.Image:
    """Write 11-class ids (255 = void) in one mask format, independently of the package."""
    if fmt == "palette":
        img = Image.frombytes("P", (ids.shape[1], ids.shape[0]), ids.astype(np.uint8).tobytes())
        # all 256 entries: with a short palette Pillow writes fewer bits per pixel and 255 (void) wraps
        img.putpalette([c for rgb in CAMVID11_COLORS for c in rgb] + [0] * 3 * (256 - len(CAMVID11_COLORS)))
        return img
    if fmt == "rgb":
        lut = np.zeros((256, 3), np.uint8)
        lut[: len(CAMVID11_COLORS)] = CAMVID11_COLORS
        lut[255] = VOID_RGB
        return Image.fromarray(lut[ids])
    if fmt == "ids8":
        return Image.fromarray(ids.astype(np.uint8))
    if fmt == "ids16":
        return Image.fromarray(np.where(ids == 255, 65535, 1000 * ids.astype(np.int64) + 7).astype(np.uint16))
    raise AssertionError(fmt)


def make_folder(root, table: str, masks: dict, images: dict | None = None, split_json=None):
    """Write ``root/images/<split>/<stem>.jpg``, ``root/masks/<split>/<stem>.png`` and ``classes.csv``.

    ``masks`` maps split -> stem -> PIL image (or a path suffix and bytes); ``split`` "" writes one folder.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.csv").write_text(table)
    if split_json is not None:
        (root / "split.json").write_text(json.dumps(split_json))
    for split, by_stem in masks.items():
        for stem, mask in by_stem.items():
            size = mask.size
            picture = (images or {}).get(stem)
            if picture is None:
                picture = np.random.default_rng(len(stem)).integers(0, 256, (size[1], size[0], 3), np.uint8)
            write_png((root / "images" / split / f"{stem}.png"), picture)
            (root / "masks" / split).mkdir(parents=True, exist_ok=True)
            mask.save(root / "masks" / split / f"{stem}.png")
    return root


def camvid_folder(root, fmt: str):
    masks = {split: {stem: encode(ids, fmt) for stem, _, ids in items} for split, items in FRAMES.items()}
    images = {stem: image for items in FRAMES.values() for stem, image, _ in items}
    return make_folder(root, table_11(fmt), masks, images)


def road_folder(root, *, layout="split", **kwargs):
    """The road-or-not task on the sample: background 0, road 1, masks 0/255."""
    table = "value,name,r,g,b\n0,background,0,0,0\n1,road,128,64,128\n"
    masks, images = {}, {}
    for split, items in FRAMES.items():
        key = split if layout == "split" else ""
        for stem, image, ids in items:
            masks.setdefault(key, {})[stem] = Image.fromarray(np.where(ids == ROAD, 255, 0).astype(np.uint8))
            images[stem] = image
    return make_folder(root, table, masks, images, **kwargs)


# --- round trips ------------------------------------------------------------------------------------


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


def test_one_folder_is_split_with_a_seed_into_whole_groups(tmp_path):
    root = road_folder(tmp_path / "one", layout="one", split_json={"seed": 3, "val": 0.3, "group": "^[^_]+"})
    splits = split_pairs(root)
    stems = {split: [image.stem for image, _ in pairs.pairs] for split, pairs in splits.items()}
    everything = sorted(stem for items in FRAMES.values() for stem, _, _ in items)
    assert sorted(stems["train"] + stems["val"]) == everything and "test" not in stems
    assert not {s.split("_")[0] for s in stems["train"]} & {s.split("_")[0] for s in stems["val"]}
    assert split_pairs(root) == splits  # the same every time
    assert CamVid(root, "val").frames == [image for image, _ in splits["val"].pairs]


def test_split_stems_keeps_groups_and_fractions():
    stems = [f"seq{g}_{i:03d}" for g in range(10) for i in range(10)]
    out = split_stems(stems, seed=0, val=0.2, test=0.1, group=r"^(seq\d+)_")
    assert sorted(out["train"] + out["val"] + out["test"]) == sorted(stems)
    assert (len(out["val"]), len(out["test"])) == (20, 10)
    groups = {split: {s.split("_")[0] for s in names} for split, names in out.items()}  # seq0 .. seq9
    assert sum(map(len, groups.values())) == 10, groups  # no sequence in two splits
    assert group_of("seq3_001", r"^(seq\d+)_") == "seq3" and group_of("seq3_001", "^seq") == "seq"
    assert split_stems(stems, seed=0, val=0.2, test=0.1) != split_stems(stems, seed=1, val=0.2, test=0.1)
    single = split_stems(stems, seed=0, val=0.2)
    assert len(single["val"]) == 20 and single == split_stems(list(reversed(stems)), seed=0, val=0.2)


# --- bad masks: one error each, naming the file, the values and the fix -------------------------------


def tiny_table(colours: bool = True) -> str:
    if colours:
        return "value,name,r,g,b\n0,sky,128,128,128\n1,road,128,64,128\n2,car,64,0,128\n255,void,0,0,0\n"
    return "value,name\n0,sky\n1,road\n2,car\n255,void\n"


def tiny_ids() -> np.ndarray:
    ids = np.zeros((24, 32), np.uint8)
    ids[12:] = 1
    ids[14:20, 4:12] = 2
    ids[0, :4] = 255
    return ids


TINY_RGB = np.array([(128, 128, 128), (128, 64, 128), (64, 0, 128)] + [(0, 0, 0)] * 253, np.uint8)


def jpeg_bytes(rgb: np.ndarray) -> Image.Image:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=75)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def bad_case(name: str, root):
    """Write a tiny dataset whose val mask ``v0`` is bad in the way ``name`` says; return its path."""
    ids, table = tiny_ids(), tiny_table()
    good = {"t0": Image.fromarray(ids), "t1": Image.fromarray(ids[::-1].copy())}
    bad = Image.fromarray(ids)
    if name == "rgb without colours":
        table, good = (
            tiny_table(colours=False),
            {k: Image.fromarray(TINY_RGB[np.asarray(v)]) for k, v in good.items()},
        )
        bad = Image.fromarray(TINY_RGB[ids])
    elif name == "values with no class":
        bad = Image.fromarray(np.where(ids == 2, 7, ids).astype(np.uint8))
    elif name == "colours with no class":
        good = {k: Image.fromarray(TINY_RGB[np.asarray(v)]) for k, v in good.items()}
        rgb = TINY_RGB[ids].copy()
        rgb[0, 5:8] = (255, 0, 0)
        bad = Image.fromarray(rgb)
    elif name == "lossy colours":
        good = {k: Image.fromarray(TINY_RGB[np.asarray(v)]) for k, v in good.items()}
        bad = jpeg_bytes(TINY_RGB[ids])  # a JPEG re-saved as PNG
    elif name == "convert L":
        bad = Image.fromarray(TINY_RGB[ids]).convert("L")
    elif name == "mixed formats":
        bad = Image.fromarray(TINY_RGB[ids])
    elif name == "size mismatch":
        bad = Image.fromarray(ids[:, :30].copy())
    root = make_folder(root, table, {"train": good, "val": {"v0": bad}})
    if name == "size mismatch":
        write_png(root / "images" / "val" / "v0.png", np.zeros((24, 32, 3), np.uint8))
    if name == "jpeg":
        (root / "masks" / "val" / "v0.png").unlink()
        Image.fromarray(ids).save(root / "masks" / "val" / "v0.jpg", quality=95)
    if name == "image without mask":
        write_png(root / "images" / "val" / "v1.png", np.zeros((24, 32, 3), np.uint8))
    return root


BAD = {
    "jpeg": ["v0.jpg", "JPEG", "compression invents", "as PNG"],
    "rgb without colours": ["v0.png", "3-channel", "add r,g,b"],
    "values with no class": ["v0.png", "7 x48", "no class", "0, 1, 2 (void 255)"],
    "colours with no class": ["v0.png", "(255, 0, 0) x3", "no class"],
    "lossy colours": ["v0.png", "lossy compression"],
    "convert L": ["v0.png", "convert('L')", "grey levels"],
    "mixed formats": ["v0.png", "RGB colour codes", "8-bit ids", "one format"],
    "size mismatch": ["v0.png", "32x24", "30x24", "must match"],
    "image without mask": ["v1.png", "no mask", "check-data"],
}


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


@pytest.mark.parametrize("name", list(BAD))
def test_check_data_exits_1_on_each_bad_mask(name, tmp_path, capsys):
    root = bad_case(name, tmp_path / "bad")
    assert main(["check-data", str(root)]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM" in out and BAD[name][0] in out and out.rstrip().endswith("fix them before training")


def test_check_data_exits_0_on_a_clean_folder_and_reports_it(tmp_path, capsys):
    root = road_folder(tmp_path / "road")
    assert main(["check-data", str(root)]) == 0
    out = capsys.readouterr().out
    assert "train: 5 image/mask pairs" in out and "val: 3 image/mask pairs" in out
    assert "mask format: binary 0/255" in out and "void 0.0%" in out
    assert "suggested class weights" in out and out.rstrip().endswith("OK: ready to train")
    report = check_data(root)
    counts = report.counts["train"]
    expected = sum((ids == ROAD).sum() for _, _, ids in FRAMES["train"])
    assert counts[1] == expected and counts[0] + counts[1] == sum(ids.size for _, _, ids in FRAMES["train"])


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


# --- the class table ------------------------------------------------------------------------------------


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


def test_unused_masks_are_a_warning_and_a_camvid_folder_is_not_an_own_folder(tmp_path, capsys):
    root = bad_case("none", tmp_path / "extra")
    Image.fromarray(tiny_ids()).save(root / "masks" / "val" / "orphan.png")
    report = check_data(root)
    assert report.ok and any("orphan.png" in w and "not used" in w for w in report.warnings)
    assert main(["check-data", str(SAMPLE)]) == 1
    assert "not a dataset folder of your own" in capsys.readouterr().out


@pytest.mark.parametrize(
    "settings, needle",
    [
        ({"vall": 0.2}, "unknown keys ['vall']"),
        ({"val": 0.6, "test": 0.5}, "sum is below 1"),
        ({"group": "(unclosed"}, "not a regular expression"),
        ({"group": "^x"}, "does not match the split's group pattern"),
    ],
)
def test_a_bad_split_json_says_what_is_wrong(settings, needle, tmp_path):
    root = road_folder(tmp_path / "one", layout="one", split_json=settings)
    with pytest.raises(CamVidError) as caught:
        CamVid(root, "train")
    assert needle in str(caught.value)
    assert not check_data(root).ok
