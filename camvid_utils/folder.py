"""A folder of your own images and masks: the package's third layout (``CamVid`` reads it as ``"folder"``).

Split into sub-folders (``test/`` optional)::

    root/classes.csv               the class table (see camvid_utils.masks)
    root/images/train/<stem>.jpg   any image format Pillow reads
    root/masks/train/<stem>.png    PNG, same stem as its image
    root/images/val/ ...           and root/masks/val/ ...

or in one folder that the package splits with a seed::

    root/classes.csv
    root/images/<stem>.jpg
    root/masks/<stem>.png
    root/split.json                optional: {"seed": 0, "val": 0.2, "test": 0.0, "group": "^[^_]+"}

``group`` is a regular expression: files whose stems give the same match (its first group, if it
has one) go to the same split, so frames of one video never land on both sides. Without it every
file is its own group.
"""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .data import IMAGE_SUFFIXES, CamVidError
from .masks import CLASS_TABLE, FORMAT_NAMES, MaskDecoder, MaskError, mask_format, read_class_table, read_mask

SPLIT_FILE = "split.json"
SPLIT_DEFAULTS = {"seed": 0, "val": 0.2, "test": 0.0, "group": None}


def is_folder_layout(root: str | os.PathLike) -> bool:
    """Return True when ``root`` holds ``classes.csv`` and ``images/``: a dataset folder of your own."""
    root = Path(root)
    return (root / CLASS_TABLE).is_file() and (root / "images").is_dir()


def is_presplit(root: Path) -> bool:
    """Return True when ``images/`` holds ``train/`` (split by sub-folders) rather than the images."""
    return (root / "images" / "train").is_dir()


def _files(folder: Path, suffixes) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    by_stem: dict[str, Path] = {}
    for path in found:
        if path.stem in by_stem:
            raise CamVidError(
                f"{by_stem[path.stem]} and {path} share the stem {path.stem!r}; masks are matched to images "
                "by stem, so rename one."
            )
        by_stem[path.stem] = path
    return by_stem


@dataclass
class Pairs:
    """The images and masks of one folder, matched by stem (sorted)."""

    pairs: list[tuple[Path, Path]]
    images_without_mask: list[Path]
    masks_without_image: list[Path]


def find_pairs(images_dir: Path, masks_dir: Path) -> Pairs:
    """Return the (image, mask) pairs of two folders, matched by file stem, and the unpaired files."""
    images = _files(images_dir, IMAGE_SUFFIXES)
    masks = _files(masks_dir, IMAGE_SUFFIXES)  # JPEG masks are found here to be refused by name later
    return Pairs(
        pairs=[(images[s], masks[s]) for s in sorted(images) if s in masks],
        images_without_mask=[images[s] for s in sorted(images) if s not in masks],
        masks_without_image=[masks[s] for s in sorted(masks) if s not in images],
    )


def read_split_settings(root: Path) -> dict:
    """Return the seeded split's settings: ``split.json`` in ``root`` over ``SPLIT_DEFAULTS``."""
    path = root / SPLIT_FILE
    if not path.is_file():
        return dict(SPLIT_DEFAULTS)
    try:
        given = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CamVidError(f"cannot read {path}: {err}; write it as JSON, such as {SPLIT_DEFAULTS}.") from None
    unknown = set(given) - set(SPLIT_DEFAULTS) if isinstance(given, dict) else {"(not an object)"}
    if unknown:
        raise CamVidError(f"{path}: unknown keys {sorted(unknown)}; it may set {sorted(SPLIT_DEFAULTS)}.")
    settings = {**SPLIT_DEFAULTS, **given}
    val, test = settings["val"], settings["test"]
    if not all(isinstance(v, (int, float)) and 0 <= v < 1 for v in (val, test)) or val + test >= 1:
        raise CamVidError(f"{path}: val and test must be fractions in [0, 1) whose sum is below 1.")
    if settings["group"] is not None:
        try:
            re.compile(settings["group"])
        except (re.error, TypeError) as err:
            raise CamVidError(
                f"{path}: group {settings['group']!r} is not a regular expression ({err})."
            ) from None
    return settings


def group_of(stem: str, pattern: str | None) -> str:
    """Return the group of a file stem: the pattern's match (its first group, if any), else the stem."""
    if pattern is None:
        return stem
    match = re.search(pattern, stem)
    if match is None:
        raise CamVidError(
            f"file {stem!r} does not match the split's group pattern {pattern!r}; fix split.json."
        )
    return match.group(1) if match.groups() else match.group(0)


def split_stems(
    stems: list[str], *, seed: int = 0, val: float = 0.2, test: float = 0.0, group: str | None = None
) -> dict[str, list[str]]:
    """Return ``{"train", "val", "test"}`` lists of stems: whole groups, shuffled with ``seed``.

    Groups are drawn in a seeded order; each joins val (else test) when that brings the split closer to
    its share ``val`` (``test``) of the files, or the split is still empty and ``val > 0`` (``test > 0``),
    else train, which always keeps at least one group. Whole groups come as close to the shares as their
    sizes allow; ``check-data`` says when that is far.
    """
    groups: dict[str, list[str]] = {}
    for stem in sorted(stems):
        groups.setdefault(group_of(stem, group), []).append(stem)
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    wanted = {"val": val * len(stems), "test": test * len(stems)}
    for key in order:
        members = groups[key]
        held_out = len(out["val"]) + len(out["test"]) + len(members)
        for split in ("val", "test"):
            have, want = len(out[split]), wanted[split]
            # a group joins a held-out split when that brings the split closer to its share (or the split
            # is still empty): whole groups cannot always land on the share, but never far past it
            if (
                want > 0
                and held_out < len(stems)
                and (not have or abs(have + len(members) - want) < want - have)
            ):
                out[split] += members
                break
        else:
            out["train"] += members  # train always keeps at least one group
    return {split: sorted(names) for split, names in out.items()}


def split_pairs(root: str | os.PathLike) -> dict[str, Pairs]:
    """Return the pairs of every split of a folder dataset (from its sub-folders, or split with a seed)."""
    root = Path(root)
    if is_presplit(root):
        splits = {}
        for split in ("train", "val", "test"):
            if (root / "images" / split).is_dir():
                splits[split] = find_pairs(root / "images" / split, root / "masks" / split)
        return splits
    found = find_pairs(root / "images", root / "masks")
    settings = read_split_settings(root)
    names = split_stems(
        [image.stem for image, _ in found.pairs],
        seed=settings["seed"],
        val=settings["val"],
        test=settings["test"],
        group=settings["group"],
    )
    by_stem = {image.stem: (image, mask) for image, mask in found.pairs}
    splits = {
        split: Pairs([by_stem[s] for s in stems], [], [])
        for split, stems in names.items()
        if stems or split != "test"  # a test split only when split.json asks for one
    }
    splits["train"].images_without_mask = found.images_without_mask
    splits["train"].masks_without_image = found.masks_without_image
    return splits


def header_format(path: Path) -> str:
    """Return the format a mask's header says (without decoding its pixels)."""
    try:
        with Image.open(path) as img:
            return mask_format(img, path)
    except (OSError, SyntaxError, ValueError) as err:
        if isinstance(err, MaskError):
            raise
        raise MaskError(f"cannot decode {path} ({err}); the file is damaged or not an image.") from None


class FolderSplit:
    """One split of a folder dataset: its pairs, class table and mask decoder (what ``CamVid`` uses)."""

    def __init__(self, root: str | os.PathLike, split: str):
        self.root = Path(root)
        self.table = read_class_table(self.root / CLASS_TABLE)
        self.decoder = MaskDecoder(self.table)
        splits = split_pairs(self.root)
        if split not in splits or not splits[split].pairs:
            where = self.root / "images" / split if is_presplit(self.root) else self.root / "images"
            raise CamVidError(
                f"{self.root} has no '{split}' images (looked in {where}); see docs/own-data.md for the "
                "layout."
            )
        pairs = splits[split]
        if pairs.images_without_mask:
            first = pairs.images_without_mask[0]
            raise CamVidError(
                f"{len(pairs.images_without_mask)} images of {self.root} have no mask, such as {first} "
                f"(expected {first.parent.as_posix().replace('/images', '/masks', 1)}/{first.stem}.png); add "
                f"the masks or move those images out. `python -m camvid_utils check-data {self.root}` lists "
                "them."
            )
        self.frames = [image for image, _ in pairs.pairs]
        self.labels = [mask for _, mask in pairs.pairs]
        # every mask of the dataset must share the format of the first (of train, if there is one)
        self.first_mask = next(pairs.pairs[0][1] for pairs in splits.values() if pairs.pairs)
        self.format = header_format(self.first_mask)

    def load_mask(self, path: Path) -> np.ndarray:
        """Return one mask as (H, W) uint8 class ids (255 = void); its format must be the first one's."""
        raw, header = read_mask(path)
        if header != self.format:
            raise MaskError(
                f"{path} is a {FORMAT_NAMES[header]} mask but {self.first_mask} (the first) is "
                f"{FORMAT_NAMES[self.format]}; every mask of a dataset must be in one format: save them "
                "alike."
            )
        return self.decoder(raw, self.decoder.format_of(raw, header), path)
