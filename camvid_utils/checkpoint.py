"""Checkpoints: written atomically, loaded with ``weights_only=True``, carrying what inference needs.

A checkpoint is a dict of plain types and tensors:
``model`` (state dict), ``model_config`` (``UNetConfig`` as a dict), ``classes``, ``colors``,
``class_set``, ``ignore_index``, ``mean``, ``std``, ``image_size`` (the (H, W) the model ran at),
``epoch``, ``history``, ``best_miou``, ``train_config``; training checkpoints also hold
``optimizer``, ``scheduler``, ``scaler`` and ``rng``.
"""

from __future__ import annotations

import filecmp
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .data import IGNORE_INDEX
from .model import UNet
from .transforms import MEAN, STD

CHECKPOINT_ENV = "CAMVID_CHECKPOINT"
SHIPPED_NAME = "unet_camvid11.pt"
REQUIRED_KEYS = ("model", "model_config", "classes", "colors", "mean", "std", "image_size")


class CheckpointError(ValueError):
    """Raised for a checkpoint that is missing, damaged or does not fit the data."""


def atomic_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``.

    A crash at any moment leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; give it a normal file's mode
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Return the checkpoint dict at ``path``, loaded safely (tensors and plain types only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train one or pass the right path.")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for damaged or foreign files
        raise CheckpointError(f"cannot load checkpoint {path}: {err}".split("\n")[0]) from None
    missing = [key for key in REQUIRED_KEYS if not isinstance(ckpt, dict) or key not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is not a camvid_utils checkpoint (missing {missing}).")
    return ckpt


@dataclass
class LoadedModel:
    """A ready model with what is needed to feed it and read its output."""

    model: UNet
    classes: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    class_set: str | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: tuple[int, int]
    checkpoint: dict


def load_model(path: str | os.PathLike, device=None) -> LoadedModel:
    """Return the model stored at ``path`` in eval mode (fp32, on ``device``) with its metadata."""
    ckpt = load_checkpoint(path)
    model = UNet.from_config(ckpt["model_config"])
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit its model_config ({err})".split("\n")[0]) from None
    model.eval().to(device or "cpu")
    return LoadedModel(
        model=model,
        classes=tuple(ckpt["classes"]),
        colors=tuple(tuple(c) for c in ckpt["colors"]),
        class_set=ckpt.get("class_set"),
        mean=tuple(ckpt["mean"]),
        std=tuple(ckpt["std"]),
        image_size=tuple(ckpt["image_size"]),
        checkpoint=ckpt,
    )


def shipped_checkpoint() -> Path:
    """Return the path of the model shipped in the repository (``data/checkpoints``)."""
    return Path(__file__).resolve().parent.parent / "data" / "checkpoints" / SHIPPED_NAME


def is_shipped_checkpoint(path: str | os.PathLike) -> bool:
    """Return True when ``path`` holds the shipped model (the file itself or a byte-for-byte copy)."""
    path, shipped = Path(path).expanduser(), shipped_checkpoint()
    if not path.is_file() or not shipped.is_file():
        return False
    if path.resolve() == shipped.resolve():
        return True
    return path.stat().st_size == shipped.stat().st_size and filecmp.cmp(path, shipped, shallow=False)


def find_checkpoint() -> Path:
    """Return ``$CAMVID_CHECKPOINT`` if set (your own model), else the shipped checkpoint."""
    env = os.environ.get(CHECKPOINT_ENV)
    path = Path(env).expanduser() if env else shipped_checkpoint()
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


def check_classes(ckpt_classes, data_classes, path, data_root) -> None:
    """Raise ``CheckpointError`` when a checkpoint's classes differ from the dataset's."""
    if tuple(ckpt_classes) != tuple(data_classes):
        raise CheckpointError(
            f"checkpoint {path} was trained on {len(ckpt_classes)} classes "
            f"({', '.join(ckpt_classes[:4])}, ...) but {data_root} has {len(data_classes)} "
            f"({', '.join(data_classes[:4])}, ...); pass the matching --class-set or checkpoint."
        )


def training_checkpoint(
    model: UNet,
    dataset,
    *,
    cfg: dict,
    alpha: torch.Tensor | None,
    epoch: int,
    history: list[dict],
    best_miou: float,
    optimizer: torch.optim.Optimizer,
    scheduler,
    scaler,
    rng: dict,
) -> dict:
    """Return the checkpoint of a training run after ``epoch`` (0-based): see the module docstring.

    ``dataset`` is the training ``CamVid`` (its classes, colours and class set travel with the
    weights); ``cfg`` the run's ``TrainConfig`` as a dict.
    """
    return {
        "model": model.state_dict(),
        "model_config": asdict(model.config),
        "classes": list(dataset.classes),
        "colors": [list(c) for c in dataset.colors],
        "class_set": dataset.class_set,
        "ignore_index": IGNORE_INDEX,
        "mean": list(MEAN),
        "std": list(STD),
        "image_size": list(cfg["image_size"]),
        "alpha": alpha,
        "epoch": epoch,
        "history": history,
        "best_miou": best_miou,
        "train_config": cfg,
        "optimizer": optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "scaler": None if scaler is None else scaler.state_dict(),
        "rng": rng,
    }


def load_initial_weights(model: UNet, path: str | os.PathLike, classes, data_root) -> None:
    """Copy a checkpoint's weights into ``model``; its classes and architecture must match."""
    ckpt = load_checkpoint(path)
    check_classes(ckpt["classes"], classes, path, data_root)
    theirs, ours = ckpt["model_config"], asdict(model.config)
    if theirs != ours:
        differ = ", ".join(
            f"{k}={theirs.get(k)!r} (config: {ours[k]!r})" for k in ours if theirs.get(k) != ours[k]
        )
        raise CheckpointError(
            f"init_from checkpoint {path} has a different U-Net: {differ}; "
            "set the same --base-channels (or train from scratch)."
        )
    model.load_state_dict(ckpt["model"])  # copy_ casts fp16 (exported) weights to the model's fp32


def export_for_inference(src: str | os.PathLike, dst: str | os.PathLike, half: bool = True) -> int:
    """Write a copy of checkpoint ``src`` without optimiser state (fp16 weights if ``half``).

    Returns the size of the written file in bytes.
    """
    ckpt = load_checkpoint(src)
    slim = {k: v for k, v in ckpt.items() if k not in ("optimizer", "scheduler", "scaler", "rng")}
    if half:
        slim["model"] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    atomic_save(slim, dst)
    return Path(dst).stat().st_size
