"""Where the data, the shipped model and the training runs live, and the notebooks' one-line set-up.

The course's default path is the bundled sample (``data/sample``) and the shipped model
(``data/checkpoints/unet_camvid11.pt``), both in the repository. ``CAMVID_ROOT`` points to other
data, ``CAMVID_CHECKPOINT`` to another model and ``CAMVID_RUNS`` to another folder for training
runs; ``python -m camvid_utils download`` puts the full data where ``find_data_root`` looks first.
A package installed without its repository (``pip install .`` or from a git URL) has neither the
sample nor the shipped model, and says what to install.
"""

from __future__ import annotations

import filecmp
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import CheckpointError
from .data import _GET_DATA, CamVidError
from .runtime import pick_device, smoke_mode

CHECKPOINT_ENV = "CAMVID_CHECKPOINT"
RUNS_ENV = "CAMVID_RUNS"
SHIPPED_NAME = "unet_camvid11.pt"  # the course's U-Net, trained from scratch (notebooks 1-7)
PRETRAINED_NAME = "lite0_unet_camvid11.pt"  # the U-Net on an ImageNet-pretrained Lite0 (notebook 8)
INSTALL_FROM_CLONE = (
    "git clone https://github.com/camvid-segmentation/camvid-segmentation && "
    "cd camvid-segmentation && pip install -e ."
)


def repo_root() -> Path:
    """Return the folder that holds this package (the repository root in a checkout)."""
    return Path(__file__).resolve().parent.parent


def sample_root() -> Path:
    """Return the bundled real sample (Kaggle layout, a few frames per split).

    Raises ``CamVidError`` saying what to install when the package was installed without its
    repository (``pip install .`` or from a git URL), which holds the sample.
    """
    path = repo_root() / "data" / "sample"
    if not path.is_dir():
        raise CamVidError(
            f"the bundled sample {path} is not there: camvid_utils is installed without its repository "
            f"(pip install . or from a git URL), which holds the sample and the shipped model. Install "
            f"from a clone: {INSTALL_FROM_CLONE}"
        )
    return path


def default_data_dir() -> Path:
    """Return ``data/camvid`` in the repository: where ``download`` puts CamVid by default."""
    return repo_root() / "data" / "camvid"


def is_bundled_sample(root: str | os.PathLike) -> bool:
    """Return True when ``root`` is the bundled sample (the course's default data)."""
    try:
        sample = sample_root()
    except CamVidError:  # installed without the repository: there is no bundled sample
        return False
    return Path(root).expanduser().resolve() == sample.resolve()


_said_sample = False


def find_data_root() -> Path:
    """Return where CamVid is, the first that exists of: ``$CAMVID_ROOT``; ``data/camvid`` in the
    repository (where ``python -m camvid_utils download`` puts it); ``data/camvid`` in the current
    folder (Colab's ``/content`` after ``download --dest data/camvid``); the bundled sample.
    """
    global _said_sample
    env = os.environ.get("CAMVID_ROOT")
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise CamVidError(f"CAMVID_ROOT={env} is not a folder. {_GET_DATA}")
        return path
    for full in (default_data_dir(), Path.cwd() / "data" / "camvid"):
        if full.is_dir():
            return full
    if not _said_sample:
        print(
            f"Using the small bundled sample in {sample_root()}; for the full dataset run "
            f"`python -m camvid_utils download` (it puts CamVid in {default_data_dir()}) or set "
            "CAMVID_ROOT (see docs/data.md)."
        )
        _said_sample = True
    return sample_root()


def shipped_checkpoint(name: str = SHIPPED_NAME) -> Path:
    """Return the path of a model shipped in the repository (``data/checkpoints``): by default the
    course's U-Net, ``PRETRAINED_NAME`` for the U-Net on a pretrained encoder.

    Raises ``CheckpointError`` saying what to install when the package was installed without its
    repository (``pip install .`` or from a git URL), which holds the model.
    """
    path = repo_root() / "data" / "checkpoints" / name
    if not path.is_file():
        raise CheckpointError(
            f"the shipped model {path} is not there: camvid_utils is installed without its repository "
            f"(pip install . or from a git URL), which holds it. Install from a clone: {INSTALL_FROM_CLONE}"
        )
    return path


def is_shipped_checkpoint(path: str | os.PathLike, name: str = SHIPPED_NAME) -> bool:
    """Return True when ``path`` holds the shipped model ``name`` (the file or a byte-for-byte copy)."""
    try:
        shipped = shipped_checkpoint(name)
    except CheckpointError:  # installed without the repository: no shipped model to compare with
        return False
    path = Path(path).expanduser()
    if not path.is_file():
        return False
    if path.resolve() == shipped.resolve():
        return True
    return path.stat().st_size == shipped.stat().st_size and filecmp.cmp(path, shipped, shallow=False)


def find_checkpoint(shipped: str = SHIPPED_NAME) -> Path:
    """Return ``$CAMVID_CHECKPOINT`` if set (your own model), else the shipped checkpoint ``shipped``."""
    env = os.environ.get(CHECKPOINT_ENV)
    path = Path(env).expanduser() if env else shipped_checkpoint(shipped)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist; "
            + (
                f"unset {CHECKPOINT_ENV} to use the shipped model."
                if env
                else "restore data/checkpoints from git."
            )
        )
    return path


def new_run_folder(runs: str | os.PathLike, name: str) -> Path:
    """Return ``runs/name``, or ``runs/name_2``, ``_3``... the first that does not exist yet: a new run
    never overwrites an earlier one, which may hold a model someone trained."""
    folder, number = Path(runs) / name, 1
    while folder.exists():
        number += 1
        folder = Path(runs) / f"{name}_{number}"
    return folder


def runs_dir() -> Path:
    """Return the folder for the notebooks' training runs: ``$CAMVID_RUNS`` (``~`` expanded), else (unset
    or empty) ``runs/`` in the repository."""
    value = os.environ.get(RUNS_ENV, "").strip()
    return Path(value).expanduser() if value else repo_root() / "runs"  # "~/runs" is the home's


OWN_MODEL_OR_DATA = "Your own model or data: the numbers below are yours; the prose quotes the shipped model."


@dataclass(frozen=True)
class Setup:
    """Where a notebook's data, model and runs are, and how it runs: what ``setup()`` found."""

    root: Path  # the dataset folder (find_data_root)
    checkpoint: Path | None  # the model (find_checkpoint); None for a notebook without one
    shipped: bool  # the checkpoint is the shipped model
    on_sample: bool  # the data is the bundled sample
    device: torch.device  # the best available (pick_device)
    smoke: bool  # CAMVID_SMOKE=1 (the tests): the slow cells run tiny
    runs: Path  # where training runs go (runs_dir)

    @property
    def default_path(self) -> bool:
        """Return True on the path the prose quotes: the shipped model on the bundled sample."""
        return self.shipped and self.on_sample


def setup(model: bool = True, shipped: str = SHIPPED_NAME) -> Setup:
    """Return where the data and (with ``model``) the model are, the device and the smoke switch.

    Prints the first three on one line, ``model: <file> | data: <folder> | device: <device>``
    (without the model part when ``model`` is False; the smoke switch is the tests', not the
    reader's), and, when a model is used that is not the shipped one or data that is not the
    bundled sample, one more line saying that the numbers printed are the reader's own, not the
    ones the prose quotes.
    """
    root = find_data_root()
    checkpoint = find_checkpoint(shipped) if model else None
    found = Setup(
        root=root,
        checkpoint=checkpoint,
        shipped=checkpoint is not None and is_shipped_checkpoint(checkpoint, shipped),
        on_sample=is_bundled_sample(root),
        device=pick_device(),
        smoke=smoke_mode(),
        runs=runs_dir(),
    )
    where = f"data: {found.root} | device: {found.device}"
    print(f"model: {checkpoint.name} | {where}" if model else where)
    if model and not found.default_path:
        print(OWN_MODEL_OR_DATA)
    return found
