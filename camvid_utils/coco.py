"""COCO polygons to masks: turn a labelling tool's ``annotations.json`` into a dataset folder of your own.

``coco_to_folder(annotations, images_dir, out)`` writes ``out/images/`` (copies), ``out/masks/``
(palette PNGs, one id per pixel) and ``out/classes.csv``: class 0 is ``background`` (every pixel no
annotation covers), then the COCO categories in the order of their ids.

How it is stated:

- a pixel belongs to a polygon when its centre ``(x + 0.5, y + 0.5)`` lies inside it (even-odd
  rule; COCO coordinates count from the top-left corner of the image); the polygons of one
  annotation are united;
- overlapping instances: they are painted largest first, so where two overlap the smaller one wins
  (a car on the road stays a car; a person in front of a bus stays a person);
- ``iscrowd`` annotations are painted like the others; their RLE (uncompressed) is decoded here,
  compressed RLE needs ``pycocotools`` (``pip install -e .[coco]``);
- an image without annotations gets an all-background mask, or is left out with
  ``skip_unannotated=True``; the returned summary lists them either way.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .data import IGNORE_INDEX, CamVidError
from .masks import CLASS_TABLE, DEFAULT_COLORS, ClassTable, write_class_table


class CocoError(CamVidError):
    """An annotations file that cannot be converted; the message names the entry and the fix."""


def polygon_mask(polygon: Sequence[float], height: int, width: int) -> np.ndarray:
    """Return the (H, W) bool mask of the pixels whose centres lie inside ``polygon`` (x0, y0, x1, y1, ...).

    Shape:
        (H, W) bool.
    """
    xy = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    mask = np.zeros((height, width), dtype=bool)
    if len(xy) < 3:
        return mask
    x0, y0 = xy[:, 0], xy[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    top = max(int(np.floor(y0.min() - 0.5)), 0)
    bottom = min(int(np.ceil(y0.max() + 0.5)), height)
    if top >= bottom:
        return mask
    centres_y = np.arange(top, bottom) + 0.5  # (R,)
    crosses = (y0[None] <= centres_y[:, None]) != (y1[None] <= centres_y[:, None])  # (R, E)
    with np.errstate(divide="ignore", invalid="ignore"):
        at = x0 + (centres_y[:, None] - y0) * (x1 - x0) / (y1 - y0)  # (R, E) where each edge meets the row
    at = np.where(crosses, at, np.inf)
    centres_x = np.arange(width) + 0.5  # (W,)
    left = (at[:, :, None] < centres_x[None, None, :]).sum(axis=1)  # (R, W) crossings left of each centre
    mask[top:bottom] = left % 2 == 1
    return mask


def rle_mask(rle: dict, height: int, width: int) -> np.ndarray:
    """Return the (H, W) bool mask of a COCO run-length encoding (column-major runs, background first).

    Uncompressed RLE (``counts`` a list) is decoded here; compressed RLE (a string) through pycocotools.
    """
    counts = rle.get("counts")
    if isinstance(counts, list):
        flat = np.zeros(sum(counts), dtype=bool)
        starts = np.cumsum([0, *counts[:-1]])
        for start, run in zip(starts[1::2], counts[1::2], strict=True):
            flat[start : start + run] = True
        if flat.size != height * width:
            raise CocoError(f"an RLE of {flat.size} pixels does not fit its {width}x{height} image.")
        return flat.reshape(width, height).T
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        raise CocoError(
            "compressed RLE needs pycocotools: pip install -e .[coco] (or pip install pycocotools)."
        ) from None
    return mask_utils.decode(rle).astype(bool)


def annotation_mask(annotation: dict, height: int, width: int) -> np.ndarray:
    """Return the (H, W) bool mask of one COCO annotation (its polygons united, or its RLE)."""
    segmentation = annotation.get("segmentation")
    if isinstance(segmentation, dict):
        return rle_mask(segmentation, height, width)
    if not isinstance(segmentation, list):
        raise CocoError(f"annotation {annotation.get('id')} has no polygons or RLE in 'segmentation'.")
    mask = np.zeros((height, width), dtype=bool)
    for polygon in segmentation:
        try:
            xy = np.asarray(polygon, dtype=np.float64)
        except (TypeError, ValueError):  # a null among the numbers, or not numbers at all
            xy = np.array([np.nan])
        if xy.ndim != 1 or len(xy) % 2 or not np.isfinite(xy).all():
            raise CocoError(
                f"annotation {annotation.get('id')} (image {annotation.get('image_id')}) has a polygon whose "
                "coordinates are not an even number of finite numbers (a NaN, null or a lone x); fix or drop "
                "it in the annotation tool and export again."
            )
        mask |= polygon_mask(xy, height, width)
    return mask


def _load(annotations) -> dict:
    if isinstance(annotations, dict):
        return annotations
    path = Path(annotations)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CocoError(f"cannot read COCO annotations {path}: {err}.") from None


def _void_categories(coco: dict) -> set:
    """Return the ids of the categories named "void" (any case): their regions are void, not a class."""
    return {c["id"] for c in coco.get("categories") or [] if str(c.get("name", "")).strip().lower() == "void"}


def coco_masks(annotations: dict | str | os.PathLike) -> tuple[list[str], dict[int, np.ndarray]]:
    """Return the class names (background first) and each image's (H, W) uint8 id mask, by image id.

    A category named "void" (any case) is not a class: its regions are void (255) in the masks.
    """
    coco = _load(annotations)
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise CocoError(f"the annotations have no '{key}' list; is this a COCO annotations.json?")
    void = _void_categories(coco)
    categories = [c for c in sorted(coco["categories"], key=lambda c: c["id"]) if c["id"] not in void]
    if len(categories) > 254:
        raise CocoError(f"{len(categories)} categories; at most 254 fit in one mask.")
    seen = {}
    for c in categories:
        key = str(c.get("name", "")).strip().lower()
        if key in seen:
            raise CocoError(
                f"categories {seen[key]['id']} and {c['id']} are both named {c.get('name')!r} (letter case "
                "aside): one class would get two ids. Merge them in the annotation tool and export again."
            )
        seen[key] = c
    value = {c["id"]: i + 1 for i, c in enumerate(categories)}
    value.update({category_id: IGNORE_INDEX for category_id in void})  # "void" regions: ignored, not a class
    images = {image["id"]: image for image in coco["images"]}
    painted: dict[int, list] = {image_id: [] for image_id in images}
    for ann in coco["annotations"]:
        if ann.get("image_id") not in images:
            raise CocoError(
                f"annotation {ann.get('id')} refers to image {ann.get('image_id')}, not in 'images'."
            )
        if ann.get("category_id") not in value:
            raise CocoError(
                f"annotation {ann.get('id')} has category {ann.get('category_id')}, not in 'categories'."
            )
        image = images[ann["image_id"]]
        shape = annotation_mask(ann, image["height"], image["width"])
        painted[ann["image_id"]].append(
            (int(shape.sum()), ann.get("id", 0), value[ann["category_id"]], shape)
        )
    masks = {}
    for image_id, shapes in painted.items():
        image = images[image_id]
        ids = np.zeros((image["height"], image["width"]), dtype=np.uint8)
        for _, _, class_id, shape in sorted(shapes, key=lambda s: (-s[0], s[1])):  # largest first
            ids[shape] = class_id
        masks[image_id] = ids
    return ["background", *(c["name"] for c in categories)], masks


def coco_to_folder(
    annotations: dict | str | os.PathLike,
    images_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    skip_unannotated: bool = False,
) -> dict:
    """Write a dataset folder of your own from COCO annotations; return what was written.

    ``out`` must be new or empty. Returns ``{"root", "images", "unannotated", "classes", "void"}``:
    the folder, how many pairs were written, the file names of images without an annotation that paints
    a pixel (annotations with empty polygons paint none; these images are warned about unless
    ``skip_unannotated`` leaves them out), the classes, and whether a "void" category was made void.
    """
    coco, images_dir, out = _load(annotations), Path(images_dir), Path(out)
    if out.exists() and any(out.iterdir()):
        raise CocoError(f"{out} is not empty; pass a new folder for the converted dataset.")
    names, masks = coco_masks(coco)
    annotated = {image_id for image_id, ids in masks.items() if ids.any()}  # at least one pixel painted
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    # all 256 entries: with a short palette Pillow writes fewer bits per pixel, and ids wrap
    palette = [c for i in range(256) for c in DEFAULT_COLORS[i % len(DEFAULT_COLORS)]]
    written, unannotated = 0, []
    for image in sorted(coco["images"], key=lambda im: im["file_name"]):
        source = images_dir / image["file_name"]
        if image["id"] not in annotated:
            unannotated.append(image["file_name"])
            if skip_unannotated:
                continue
        if not source.is_file():
            raise CocoError(f"image {source} (id {image['id']} in the annotations) does not exist.")
        with Image.open(source) as img:
            if img.size != (image["width"], image["height"]):
                raise CocoError(
                    f"{source} is {img.size[0]}x{img.size[1]} but the annotations say "
                    f"{image['width']}x{image['height']}; they describe another image."
                )
        stem = Path(image["file_name"]).stem
        shutil.copy2(source, out / "images" / Path(image["file_name"]).name)
        ids = masks[image["id"]]
        mask = Image.frombytes("P", (ids.shape[1], ids.shape[0]), ids.tobytes())
        mask.putpalette(palette)
        mask.save(out / "masks" / f"{stem}.png")
        written += 1
    colors = DEFAULT_COLORS[: len(names)] if len(names) <= len(DEFAULT_COLORS) else None  # distinct only
    void = _void_categories(coco)
    table = ClassTable(
        names=tuple(names),
        values=tuple(range(len(names))),
        colors=colors,
        void_value=IGNORE_INDEX if void else None,
        void_color=(0, 0, 0) if void and colors else None,
    )
    write_class_table(out / CLASS_TABLE, table)
    if unannotated and not skip_unannotated:
        shown = ", ".join(unannotated[:5]) + (
            f" and {len(unannotated) - 5} more" if len(unannotated) > 5 else ""
        )
        warnings.warn(
            f"{len(unannotated)} image(s) have no annotation that paints a pixel ({shown}): their masks are "
            "all background, which teaches the model that nothing is there. If nobody labelled them, convert "
            "again with skip_unannotated=True.",
            stacklevel=2,
        )
    return {"root": out, "images": written, "unannotated": unannotated, "classes": names, "void": bool(void)}
