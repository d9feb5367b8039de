"""Folders of your own, written by the tests: the bundled frames in every mask format, tiny bad ones."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from camvid_utils.data import CAMVID11_CLASSES, CAMVID11_COLORS, SPLITS, CamVid
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
