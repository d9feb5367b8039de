"""The notebooks on the paths a learner takes besides the default one (nbval, in a fresh pytest).

``pytest`` runs every notebook on the bundled sample with the shipped model. Here the same notebooks
run twice more, each in its own pytest process so that the kernels see the environment:

- ``own-checkpoint``: ``CAMVID_CHECKPOINT`` points to a model that differs from the shipped one in
  width, depth, up-sampling and quality (base 8, depth 3, bilinear, a few steps of training), the way
  a learner's ``best.pt`` from notebook 3 does;
- ``segnet-layout``: ``CAMVID_ROOT`` points to a small copy of the bundled sample in the SegNet
  layout (480x360 frames, 8-bit class ids with 11 = Unlabelled) that has a test split, as the full
  SegNet download does.

Every code cell of every notebook must pass in both (a failed assert or an exception fails it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camvid_utils.config import TrainConfig
from camvid_utils.data import SPLITS, CamVid
from camvid_utils.locations import sample_root
from camvid_utils.training import fit

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
SEGNET_VOID = 11
SEGNET_SIZE = (480, 360)  # (W, H), as PIL counts


def make_segnet_copy(root: Path) -> Path:
    """Write the bundled sample in the SegNet layout at 480x360: ``<split>/`` and ``<split>annot/``."""
    for split in SPLITS:
        frames = CamVid(sample_root(), split, class_set="camvid11")
        for index, path in enumerate(frames.frames):
            image, mask = frames.load_frame(index)  # (3, H, W) uint8, (H, W) int64 with 255 = void
            ids = np.where(mask.numpy() == 255, SEGNET_VOID, mask.numpy()).astype(np.uint8)
            (root / split).mkdir(parents=True, exist_ok=True)
            (root / f"{split}annot").mkdir(exist_ok=True)
            picture = Image.fromarray(image.permute(1, 2, 0).numpy())
            picture.resize(SEGNET_SIZE, Image.Resampling.BILINEAR).save(root / split / f"{path.stem}.png")
            label = Image.fromarray(ids).resize(SEGNET_SIZE, Image.Resampling.NEAREST)
            label.save(root / f"{split}annot" / f"{path.stem}.png")
    return root


def make_learner_checkpoint(out: Path) -> Path:
    """Train a deliberately different model for a few steps and return its ``best.pt``."""
    cfg = TrainConfig(
        data=str(sample_root()),
        class_set="camvid11",
        out=str(out),
        epochs=1,
        base_channels=8,
        depth=3,
        bilinear=True,
        image_size=(96, 128),
        num_workers=0,
        max_train_batches=2,
        max_eval_images=1,
        seed=0,
    )
    fit(cfg, log=lambda line: None)
    return out / "best.pt"


def test_segnet_copy_matches_the_sample(tmp_path):
    root = make_segnet_copy(tmp_path / "segnet")
    for split in SPLITS:
        segnet = CamVid(root, split)
        kaggle = CamVid(sample_root(), split, class_set="camvid11")
        assert segnet.layout == "segnet" and len(segnet) == len(kaggle)
        assert segnet.classes == kaggle.classes
        image, mask = segnet.load_frame(0)
        assert tuple(image.shape) == (3, 360, 480) and tuple(mask.shape) == (360, 480)
        # nearest-neighbour halving keeps the label's classes (void stays void)
        assert set(mask.unique().tolist()) <= set(kaggle.load_frame(0)[1].unique().tolist())


def run_notebooks(env_changes: dict[str, str], junit: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_changes, "CAMVID_SMOKE": "1", "MPLBACKEND": "Agg"}
    command = [sys.executable, "-m", "pytest", "-q", *map(str, NOTEBOOKS), f"--junitxml={junit}"]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)


@pytest.mark.slow
@pytest.mark.parametrize("path", ["own-checkpoint", "segnet-layout"])
def test_every_notebook_runs_on_another_path(path, tmp_path):
    if path == "own-checkpoint":
        env = {"CAMVID_CHECKPOINT": str(make_learner_checkpoint(tmp_path / "run"))}
    else:
        env = {"CAMVID_ROOT": str(make_segnet_copy(tmp_path / "segnet"))}
    junit = tmp_path / "junit.xml"
    done = run_notebooks(env, junit)
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    failed = [
        f"{c.get('classname')}::{c.get('name')}: {problem.get('message', '')[:300]}"
        for c in cases
        for problem in [*c.iter("failure"), *c.iter("error")]
    ]
    skipped = [c.get("name") for c in cases if c.find("skipped") is not None]
    ran = {c.get("classname") for c in cases}
    assert done.returncode == 0 and not failed, "\n".join(failed) or done.stdout[-3000:]
    assert not skipped, skipped
    assert ran == {f"notebooks.{p.name}" for p in NOTEBOOKS}, ran
