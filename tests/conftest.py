"""Fixtures: tiny CamVid folders in both layouts, written by the tests themselves."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camvid_utils.config import TrainConfig
from camvid_utils.locations import sample_root

REPO = Path(__file__).resolve().parent.parent
SAMPLE = sample_root()


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def kaggle_colors() -> list[tuple[str, tuple[int, int, int]]]:
    """The real class_dict.csv rows, read independently of the package's parser."""
    rows = []
    for line in (SAMPLE / "class_dict.csv").read_text().splitlines()[1:]:
        name, *rgb = (field.strip() for field in line.split(","))
        rows.append((name, tuple(int(v) for v in rgb)))
    return rows


def make_kaggle(root: Path, ids_per_split: dict[str, list[np.ndarray]], rows=None) -> Path:
    """Write a Kaggle-layout dataset whose labels paint row ``i`` of class_dict with id ``i``."""
    rows = rows or kaggle_colors()
    root.mkdir(parents=True, exist_ok=True)
    (root / "class_dict.csv").write_text(
        "name,r,g,b\n" + "\n".join(f"{n},{r},{g},{b}" for n, (r, g, b) in rows)
    )
    palette = np.array([rgb for _, rgb in rows], dtype=np.uint8)
    rng = np.random.default_rng(0)
    for split, labels in ids_per_split.items():
        for i, ids in enumerate(labels):
            h, w = ids.shape
            write_png(root / split / f"f{i:03d}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            write_png(root / f"{split}_labels" / f"f{i:03d}_L.png", palette[ids])
    return root


def make_segnet(root: Path, labels_per_split: dict[str, list[np.ndarray]]) -> Path:
    """Write a SegNet-layout dataset with the given 8-bit labels."""
    rng = np.random.default_rng(1)
    for split, labels in labels_per_split.items():
        for i, label in enumerate(labels):
            h, w = label.shape
            write_png(root / split / f"s{i:03d}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            write_png(root / f"{split}annot" / f"s{i:03d}.png", label.astype(np.uint8))
    return root


@pytest.fixture
def kaggle_root(tmp_path):
    """A Kaggle-layout folder: 3 train and 2 val frames of 12x16 covering all 32 rows."""
    ids = np.arange(12 * 16).reshape(12, 16) % 32
    return make_kaggle(tmp_path / "kaggle", {"train": [ids, ids[::-1], ids.T[:12, :12]], "val": [ids, ids]})


# The command-line flags of a seconds-long run (``train`` adds --data, --out and what a test needs).
TINY_FLAGS = ["--batch-size", "2", "--image-size", "48", "64", "--base-channels", "4", "--workers", "0"]


def tiny(out, **overrides) -> TrainConfig:
    """A seconds-long run on the bundled sample: 32 classes, 48x64 inputs, a 2-level U-Net."""
    base = dict(
        data=str(SAMPLE),
        out=str(out),
        epochs=2,
        batch_size=2,
        image_size=(48, 64),
        base_channels=4,
        depth=2,
        num_workers=0,
        max_eval_images=2,
        scale=(1.0, 1.3),
        hflip=0.5,
        jitter=0.1,
    )
    return replace(TrainConfig(), **{**base, **overrides})
