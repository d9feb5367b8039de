"""``check_data(root)``: one report on a dataset folder of your own before any training.

The report lists the pairs found and the unpaired files, image and mask sizes, the mask format,
the classes present and their pixel shares per split, classes absent from a split, the void share,
suggested class weights, and validation frames that are near copies of training frames. Its
``problems`` are what would make training wrong (``python -m camvid_utils check-data`` exits 1 on
any); its ``warnings`` are worth reading but do not stop training.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .config import how_to_set
from .data import IGNORE_INDEX, CamVidError, exif_orientation, mask_counts, orientation_advice, shown_size
from .folder import SPLIT_FILE, is_folder_layout, is_presplit, read_split_settings, split_pairs
from .losses import class_weights
from .masks import CLASS_TABLE, FORMAT_NAMES, MaskDecoder, read_class_table, read_mask

# Mean absolute grey difference of 32x24 thumbnails (0..1) below which two frames are near copies.
# Measured on CamVid's SegNet train split: frames 1 s apart in one video are at 0.080 (median; a
# quarter below 0.052), frames of different videos never below 0.098.
NEAR_COPY = 0.05
_SHOWN = 5  # files named per problem


@dataclass
class DataReport:
    """What ``check_data`` found; ``ok`` is False when a problem would make training wrong."""

    root: Path
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    format: str | None = None
    counts: dict[str, list[int]] = field(default_factory=dict)  # split -> pixels per class
    void: dict[str, int] = field(default_factory=dict)  # split -> void pixels
    image_totals: dict[str, list[int]] = field(
        default_factory=dict
    )  # split -> pixels of images with each class
    weights: dict[str, list[float]] = field(default_factory=dict)  # method -> per-class weight

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        out = [f"check-data {self.root}", *self.lines]
        out += [f"WARNING: {w}" for w in self.warnings]
        out += [f"PROBLEM: {p}" for p in self.problems]
        verdict = (
            "OK: ready to train" if self.ok else f"{len(self.problems)} problem(s): fix them before training"
        )
        return "\n".join([*out, verdict])


def _named(paths: list[Path]) -> str:
    shown = ", ".join(str(p) for p in paths[:_SHOWN])
    return shown + (f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else "")


def thumbnail(path: Path) -> np.ndarray:
    """Return a 24x32 grey thumbnail of an image in [0, 1], for finding near copies.

    Raises ``CamVidError`` naming the file when it cannot be decoded (damaged or truncated).
    """
    try:
        with Image.open(path) as img:
            small = img.convert("L").resize((32, 24), Image.Resampling.BOX)
    except (OSError, SyntaxError, ValueError) as err:
        raise CamVidError(
            f"cannot decode {path} ({str(err).splitlines()[0]}); the file is damaged or truncated: copy or "
            "export it again, or remove it."
        ) from None
    return np.asarray(small, dtype=np.float32) / 255


def near_copies(train: list[Path], held_out: list[Path]) -> list[tuple[Path, Path, float]]:
    """Return ``(held-out frame, its nearest training frame, distance)`` for each near copy."""
    if not train or not held_out:
        return []
    ours = np.stack([thumbnail(p) for p in train])  # (N, 24, 32)
    found = []
    for path in held_out:
        dist = np.abs(ours - thumbnail(path)).mean(axis=(1, 2))  # (N,)
        nearest = int(dist.argmin())
        if dist[nearest] < NEAR_COPY:
            found.append((path, train[nearest], float(dist[nearest])))
    return found


def check_data(root: str | os.PathLike, *, leak_check: bool = True) -> DataReport:
    """Return the ``DataReport`` of a dataset folder of your own (``report.ok``; ``print(report)``)."""
    root = Path(root).expanduser()
    report = DataReport(root)
    if not is_folder_layout(root):
        report.problems.append(
            f"{root} is not a dataset folder of your own: it needs {root / CLASS_TABLE} and "
            f"{root / 'images'}/ (see docs/own-data.md)."
        )
        return report
    try:
        table = read_class_table(root / CLASS_TABLE)
        splits = split_pairs(root)
    except CamVidError as err:
        report.problems.append(str(err))
        return report
    void = "none" if table.void_value is None else f"value {table.void_value}"
    if table.void_color is not None:
        void += f", colour {table.void_color}"
    report.lines.append(f"classes ({table.num_classes}, void: {void}): {', '.join(table.names)}")
    if is_presplit(root):
        report.lines.append("layout: split by sub-folders images/<split>/ and masks/<split>/")
    else:
        settings = read_split_settings(root)
        given = (
            "from " + SPLIT_FILE
            if (root / SPLIT_FILE).is_file()
            else f"the defaults; set them in {SPLIT_FILE}"
        )
        report.lines.append(
            f"layout: one folder, split with seed {settings['seed']}, val {settings['val']}, test "
            f"{settings['test']}, group {settings['group']!r} ({given})"
        )
        total = sum(len(pairs.pairs) for pairs in splits.values())
        for split in ("val", "test"):
            share = len(splits[split].pairs) / total if split in splits and total else 0.0
            if total and abs(share - settings[split]) > 0.05:
                report.warnings.append(
                    f"{split} holds {share:.0%} of the pairs where {SPLIT_FILE} asks for "
                    f"{settings[split]:.0%}: whole groups cannot come closer. Use a finer group pattern, or "
                    "split by hand into images/<split>/ and masks/<split>/."
                )
    _check_pairs(report, splits)
    decoder, formats, first = MaskDecoder(table), Counter(), {}  # format -> count, its first mask
    for split, pairs in splits.items():
        _check_split(report, split, pairs.pairs, table, decoder, formats, first)
    _check_format(report, formats, first)
    _check_classes(report, table)
    if leak_check and "train" in splits and not report.problems:
        _check_leaks(report, splits)
    return report


def _check_pairs(report: DataReport, splits) -> None:
    for split in ("train", "val"):
        if split not in splits or not splits[split].pairs:
            report.problems.append(
                f"no '{split}' pairs: training needs train and val images with masks (add images/{split}/ "
                f"and masks/{split}/, or put all files in images/ and masks/ to split them with a seed)."
            )
    for split, pairs in splits.items():
        report.lines.append(f"{split}: {len(pairs.pairs)} image/mask pairs")
        if pairs.images_without_mask:
            report.problems.append(
                f"{len(pairs.images_without_mask)} image(s) have no mask with the same stem: "
                f"{_named(pairs.images_without_mask)}; add their masks (PNG) or move them out."
            )
        if pairs.masks_without_image:
            report.warnings.append(
                f"{len(pairs.masks_without_image)} mask(s) have no image with their stem and are not used: "
                f"{_named(pairs.masks_without_image)}."
            )


def _check_split(report, split, pairs, table, decoder, formats, first) -> None:
    counts = np.zeros(table.num_classes, dtype=np.int64)
    totals = np.zeros(table.num_classes, dtype=np.int64)  # per class: pixels of the images holding it
    void, sizes, bad, turned = 0, Counter(), [], []
    for image_path, mask_path in pairs:
        try:
            with Image.open(image_path) as img:
                stored, image_size = img.size, shown_size(img)  # (W, H): as stored, as shown (EXIF)
                if exif_orientation(img) not in (0, 1):
                    turned.append(image_path)
                img.load()  # decode it whole, as training will: a truncated photo fails here, named
            raw, header = read_mask(mask_path)
            fmt = decoder.format_of(raw, header)
            ids = decoder(raw, fmt, mask_path)
        except (CamVidError, OSError) as err:
            bad.append(str(err) if str(image_path) in str(err) or str(mask_path) in str(err) else
                       f"cannot read {image_path} or its mask {mask_path} ({err}); the file is damaged or "
                       "truncated: export or copy it again, or remove the pair.")  # fmt: skip
            continue
        if not (fmt == "ids8" and decoder.table.is_binary() and not raw.any()):  # all 0: either binary format
            formats[fmt] += 1
            first.setdefault(fmt, mask_path)
        mask_size = (ids.shape[1], ids.shape[0])
        if mask_size != image_size:
            bad.append(
                f"{image_path} is {image_size[0]}x{image_size[1]} (as shown) but its mask {mask_path} is "
                f"{mask_size[0]}x{mask_size[1]} (width x height); they must match."
                + orientation_advice(image_path, stored, image_size, mask_size)
            )
            continue
        sizes[image_size] += 1
        frame, total = mask_counts(ids, table.num_classes)
        counts += frame.numpy()
        totals += total.numpy()
        void += int((ids == IGNORE_INDEX).sum())
    if turned:
        report.warnings.append(
            f"{split}: {len(turned)} photo(s) carry an EXIF orientation tag (phone photos, shown turned or "
            f"mirrored): {_named(turned)}. Their masks are read as drawn on the photo as shown (upright); "
            "a mask drawn on the stored pixels of a square or half-turned photo has the right size but "
            "the wrong place, so look at one of them."
        )
    report.problems += bad[:_SHOWN] + (
        [f"... and {len(bad) - _SHOWN} more bad masks"] if len(bad) > _SHOWN else []
    )
    if sizes:
        listed = ", ".join(f"{w}x{h} x{n}" for (w, h), n in sizes.most_common())
        report.lines.append(f"{split}: image sizes (width x height) {listed}")
    report.counts[split], report.void[split] = counts.tolist(), void
    report.image_totals[split] = totals.tolist()


def _check_format(report: DataReport, formats: Counter, first: dict) -> None:
    if not formats:
        return
    if len(formats) > 1:
        listed = ", ".join(f"{FORMAT_NAMES[f]} x{n} (such as {first[f]})" for f, n in formats.most_common())
        report.problems.append(
            f"the masks are in {len(formats)} formats: {listed}; every mask must be in one."
        )
    report.format = formats.most_common(1)[0][0]
    report.lines.append(f"mask format: {FORMAT_NAMES[report.format]}")


def _check_classes(report: DataReport, table) -> None:
    for split, counts in report.counts.items():
        total = sum(counts) + report.void[split]
        if not total:
            continue
        shares = ", ".join(
            f"{name} {100 * n / total:.1f}%" for name, n in zip(table.names, counts, strict=True)
        )
        report.lines.append(f"{split}: {shares}, void {100 * report.void[split] / total:.1f}%")
        absent = [name for name, n in zip(table.names, counts, strict=True) if n == 0]
        if absent and split == "train":
            report.problems.append(
                f"classes {absent} have no pixels in train: the model cannot learn them. Add images that "
                f"show them, or remove them from {CLASS_TABLE}."
            )
        elif absent:
            report.warnings.append(
                f"classes {absent} have no pixels in {split}: their IoU there is undefined."
            )
    train = report.counts.get("train")
    if train and any(train):
        for method in ("inverse_sqrt", "median_frequency"):
            totals = torch.tensor(report.image_totals["train"])  # as train computes them
            report.weights[method] = class_weights(torch.tensor(train), method, image_counts=totals).tolist()
        listed = ", ".join(
            f"{name} {w:.2f}" for name, w in zip(table.names, report.weights["inverse_sqrt"], strict=True)
        )
        report.lines.append(f"suggested class weights ({how_to_set('alpha', 'inverse_sqrt')}): {listed}")


def _check_leaks(report: DataReport, splits) -> None:
    train = [image for image, _ in splits["train"].pairs]
    for split in ("val", "test"):
        if split not in splits:
            continue
        copies = near_copies(train, [image for image, _ in splits[split].pairs])
        if copies:
            named = ", ".join(f"{a.name} ~ {b.name} ({d:.3f})" for a, b, d in copies[:_SHOWN])
            report.warnings.append(
                f"{len(copies)} of {len(splits[split].pairs)} {split} frames are near copies of training "
                f"frames ({named}): {split} scores will be too good. Put frames of one video or scene in one "
                f'split (a "group" pattern in {SPLIT_FILE}, such as "^[^_]+" for a prefix before "_").'
            )
