"""Checkpoints: written atomically, loaded with ``weights_only=True``, carrying what inference needs.

``weights_only=True`` unpickles only tensors and plain types, so loading a file runs none of its code
on torch 2.10 or newer, the floor: older releases had public bypasses (CVE-2025-32434, fixed in 2.6;
GHSA-63cw-57p8-fm3p, fixed in 2.10), and loading on one of them warns once (see docs/safety.md).

A checkpoint is a dict of plain types and tensors:
``model`` (state dict), ``model_config`` (``UNetConfig`` or ``EncoderUNetConfig`` as a dict: one that
names an ``encoder`` is a U-Net on that encoder, see ``model.build_model``), ``classes``, ``colors``,
``class_set``, ``ignore_index``, ``mean``, ``std`` (the inputs' normalisation: ImageNet's, or the
encoder's own), ``image_size`` (the (H, W) the model ran at),
``epoch``, ``history``, ``best_miou``, ``train_config``; training checkpoints also hold
``optimizer``, ``scheduler``, ``scaler`` and ``rng``, and ``ema``: None, or the exponential moving
average of the weights (``{"model", "decay", "updates"}``, see ``ema.py``), which ``load_model``
then uses in place of ``model``.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .config import flag, has_flag, how_to_set
from .data import IGNORE_INDEX
from .model import build_model, config_class, config_fields

REQUIRED_KEYS = ("model", "model_config", "classes", "colors", "mean", "std", "image_size")
TRAINING_KEYS = ("optimizer", "scheduler", "rng", "epoch", "history", "best_miou", "train_config")
RUN_FILES = ("best.pt", "last.pt", "history.json")  # what a training run writes into its folder


class CheckpointError(ValueError):
    """Raised for a checkpoint that is missing, damaged or does not fit the data."""


def atomic_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``.

    A crash at any moment leaves either the old file or the new one, never half of one. A write that
    fails (no space, no permission) raises ``CheckpointError`` saying why; the old file is kept.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; give it a normal file's mode
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if not isinstance(err, Exception):
            raise
        if _interrupted(err):  # Ctrl-C inside torch's writer arrives as "file write failed"
            raise KeyboardInterrupt from None
        kept = f"the previous {path.name} is unchanged" if path.is_file() else f"no {path.name} was written"
        raise CheckpointError(f"cannot write {path}: {_write_failure(err, path.parent)}; {kept}.") from err


def _interrupted(err: BaseException) -> bool:
    """Return whether a KeyboardInterrupt is among the exceptions that led to ``err``."""
    chain = [err]
    while chain[-1].__context__ is not None and len(chain) < 5:
        chain.append(chain[-1].__context__)
    return any(isinstance(e, KeyboardInterrupt) for e in chain)


def _write_failure(err: BaseException, folder: Path) -> str:
    """Say why a write into ``folder`` failed: no space, no permission, or the error itself."""
    chain = [err]
    while chain[-1].__context__ is not None and len(chain) < 5:
        chain.append(chain[-1].__context__)
    codes = {getattr(e, "errno", None) for e in chain}
    if errno.ENOSPC in codes or errno.EDQUOT in codes:
        try:
            free = f" ({shutil.disk_usage(folder).free / 2**20:.0f} MiB free)"
        except OSError:
            free = ""
        return f"no space left on the disk that holds {folder}{free}; free some space or pass another --out"
    if codes & {errno.EACCES, errno.EPERM, errno.EROFS}:
        return f"no permission to write in {folder}; pass an --out folder you can write to"
    return str(err).split("\n")[0]


SAFE_TORCH = (2, 10)  # the first torch whose weights_only loading has no known bypass
_warned_torch = False


def _warn_unsafe_torch() -> None:
    """Warn once when the installed torch predates the fixes that make ``weights_only=True`` safe."""
    global _warned_torch
    try:
        version = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    except ValueError:  # a build with an odd version string: nothing to compare
        return
    if version < SAFE_TORCH and not _warned_torch:
        _warned_torch = True
        warnings.warn(
            f"torch {torch.__version__} is older than 2.10: public advisories (CVE-2025-32434, fixed in 2.6; "
            "GHSA-63cw-57p8-fm3p, fixed in 2.10) show that a crafted checkpoint can run code or corrupt "
            "memory through torch.load(weights_only=True) there. Load only checkpoints you trust, or run: "
            'pip install --upgrade "torch>=2.10" "torchvision>=0.25"',
            stacklevel=3,
        )


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Return the checkpoint dict at ``path``, loaded with ``weights_only=True`` (tensors and plain types).

    On torch 2.10 or newer (the floor) such a load runs none of the file's code; older torch warns.
    """
    _warn_unsafe_torch()
    path = Path(path)
    if path.is_dir():
        inside = [name for name in ("best.pt", "last.pt") if (path / name).is_file()]
        hint = f"pass the checkpoint inside it, such as {path / inside[0]}" if inside else "pass a .pt file"
        raise CheckpointError(f"checkpoint {path} is a folder; {hint}.")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train one or pass the right path.")
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] != b"PK" and head[:1] != b"\x80":  # torch.save writes a zip (or, before 1.6, a pickle)
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (it starts with {head!r}); pass a .pt file written by "
            "`python -m camvid_utils train` (or the shipped model)."
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for damaged or foreign files
        why = str(err).split("\n")[0]
        if "weights_only" in str(err) or "Weights only load failed" in str(err):
            why = "it holds Python objects that a safe load refuses, so it is not a camvid_utils checkpoint"
        raise CheckpointError(
            f"cannot load checkpoint {path}: {why}. It is damaged, truncated or not a camvid_utils "
            "checkpoint; pass another file."
        ) from None
    missing = [key for key in REQUIRED_KEYS if not isinstance(ckpt, dict) or key not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is not a camvid_utils checkpoint (missing {missing}).")
    return ckpt


def scored_weights(ckpt: dict) -> dict:
    """Return the weights a checkpoint is scored with: its EMA of the weights if it has one."""
    return ckpt["ema"]["model"] if ckpt.get("ema") is not None else ckpt["model"]


@dataclass
class LoadedModel:
    """A ready model with what is needed to feed it and read its output."""

    model: torch.nn.Module  # a UNet or an EncoderUNet
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
    model = build_model(check_metadata(ckpt, path))
    check_weights(scored_weights(ckpt), model, path)
    state = {k: v.float() if v.is_floating_point() else v for k, v in scored_weights(ckpt).items()}
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


def check_weights(state: dict, model: torch.nn.Module, path) -> None:
    """Raise ``CheckpointError`` naming the file when its weights cannot be a trained model's: a
    floating-point weight stored as integers, or a weight holding NaN or infinity."""
    expected = model.state_dict()
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{path}: weight {name} is a {type(value).__name__}, not a tensor; pass another file."
            )
        if name in expected and expected[name].is_floating_point() and not value.is_floating_point():
            raise CheckpointError(
                f"{path}: weight {name} is stored as {value.dtype}, not floating point; the file was edited "
                "or damaged. Pass another checkpoint."
            )
    bad = [
        name
        for name, value in state.items()
        if value.is_floating_point() and not bool(value.isfinite().all())
    ]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise CheckpointError(
            f"{path}: weights {shown} hold NaN or infinity, so every prediction would be meaningless; the "
            "run that wrote it diverged or the file is damaged. Use an earlier checkpoint of the run "
            "(its best.pt) or train again."
        )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_metadata(ckpt: dict, path: str | os.PathLike) -> dict:
    """Return the checkpoint's ``model_config`` after checking that its metadata fits together.

    Raises ``CheckpointError`` naming the file and the field: classes for every output, a colour
    per class, a positive training size, a finite mean and a positive std per input channel.
    """

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{path}: {what}; the checkpoint is damaged or was edited. Pass another file.")

    config = ckpt["model_config"]
    kind = config_class(config) if isinstance(config, dict) else None
    known = config_fields(kind) if kind else set()
    if not isinstance(config, dict) or not {"num_classes"} <= config.keys() <= known:
        shown = sorted(config) if isinstance(config, dict) else type(config).__name__
        raise bad(f"model_config {shown} is not a U-Net configuration (keys among {sorted(known)})")
    try:
        kind(**config).widths()
    except (TypeError, ValueError) as err:
        raise bad(f"model_config {config} cannot build a U-Net ({err})") from None
    classes, colors, n = ckpt["classes"], ckpt["colors"], config["num_classes"]
    if not isinstance(classes, (list, tuple)) or len(classes) != n:
        count = len(classes) if isinstance(classes, (list, tuple)) else type(classes).__name__
        raise bad(f"it holds {count} class names for a model with {n} outputs")
    if not isinstance(colors, (list, tuple)) or len(colors) != n:
        count = len(colors) if isinstance(colors, (list, tuple)) else type(colors).__name__
        raise bad(f"it holds {count} colours for {n} classes")
    if not all(
        isinstance(c, (list, tuple)) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
        for c in colors
    ):
        raise bad("its colours must be (r, g, b) triples in 0..255")
    size = ckpt["image_size"]
    if not (
        isinstance(size, (list, tuple))
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise bad(
            f"its image_size {list(size) if isinstance(size, tuple) else size} must be two positive integers"
        )
    channels = config.get("in_channels", 3)
    mean, std = ckpt["mean"], ckpt["std"]
    if not (isinstance(mean, (list, tuple)) and len(mean) == channels and all(map(_is_number, mean))):
        raise bad(f"its mean {mean} must be {channels} finite numbers")
    if not (
        isinstance(std, (list, tuple)) and len(std) == channels and all(_is_number(v) and v > 0 for v in std)
    ):
        raise bad(f"its std {std} must be {channels} positive numbers")
    return config


def load_training_checkpoint(path: str | os.PathLike) -> dict:
    """Return a checkpoint that a run can resume from (with its optimiser, schedule and generators)."""
    path = Path(path)
    if not path.exists() and path.parent.is_dir():
        raise CheckpointError(
            f"{path.parent} holds no run to resume (no {path.name}); start one without --resume, or pass "
            f"the {flag('out')} of the run to continue."
        )
    ckpt = load_checkpoint(path)
    missing = [key for key in TRAINING_KEYS if key not in ckpt]
    if missing:
        raise CheckpointError(
            f"{path} holds no optimiser state ({', '.join(missing)} missing; an exported model?), so it "
            f"cannot be resumed; start a new run from its weights with {flag('init_from')} {path} instead."
        )
    return ckpt


def check_classes(
    ckpt_classes,
    data_classes,
    path,
    data_root,
    advice: str = "use a checkpoint trained on the data's classes, or data with the checkpoint's",
) -> None:
    """Raise ``CheckpointError`` naming the differing classes when a checkpoint's differ from the data's.

    ``path`` is the checkpoint's file, or words for a model already loaded ("the loaded model").
    ``advice`` says what the caller's user can do (each command has its own options).
    """
    ours, theirs = tuple(ckpt_classes), tuple(data_classes)
    if ours == theirs:
        return
    only_ckpt = [c for c in ours if c not in theirs]
    only_data = [c for c in theirs if c not in ours]
    differ = []
    if only_ckpt:
        differ.append(f"only the checkpoint has {_some(only_ckpt)}")
    if only_data:
        differ.append(f"only the data has {_some(only_data)}")
    if not differ:
        differ.append("the same classes in another order")
    subject = path if str(path).startswith("the ") else f"checkpoint {path}"  # "the loaded model"
    raise CheckpointError(
        f"{subject} was trained on {len(ours)} classes but {data_root} has {len(theirs)} "
        f"({'; '.join(differ)}); {advice}."
    )


def _some(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def training_checkpoint(
    model: torch.nn.Module,
    dataset,
    *,
    cfg: dict,
    normalisation: tuple,
    alpha: torch.Tensor | None,
    epoch: int,
    history: list[dict],
    best_miou: float,
    optimizer: torch.optim.Optimizer,
    scheduler,
    scaler,
    rng: dict,
    ema: dict | None = None,
) -> dict:
    """Return the checkpoint of a training run after ``epoch`` (0-based): see the module docstring.

    ``dataset`` is the training ``CamVid`` (its classes, colours and class set travel with the
    weights); ``cfg`` the run's ``TrainConfig`` as a dict; ``normalisation`` its inputs' (mean, std).
    """
    mean, std = normalisation
    return {
        "model": model.state_dict(),
        "model_config": asdict(model.config),
        "classes": list(dataset.classes),
        "colors": [list(c) for c in dataset.colors],
        "class_set": dataset.class_set,
        "ignore_index": IGNORE_INDEX,
        "mean": list(mean),
        "std": list(std),
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
        "ema": ema,
    }


def load_initial_weights(model: torch.nn.Module, path: str | os.PathLike, classes, data_root) -> list[str]:
    """Copy a checkpoint's weights into ``model``; its architecture must match, its classes need not.

    When the checkpoint's classes differ from ``classes`` (another count, names or order), every layer
    but the output layer (``head``) is copied and the head keeps its fresh initialisation. Returns the
    names of the parameters left re-initialised (none when the classes match).
    """
    ckpt = load_checkpoint(path)
    config = check_metadata(ckpt, path)
    kind = config_class(config)
    same_classes = tuple(ckpt["classes"]) == tuple(classes)
    ours = asdict(model.config)
    theirs = (
        asdict(kind(**{**config, "num_classes": ours["num_classes"]}))
        if isinstance(model.config, kind)
        else dict(config)
    )
    if theirs != ours:
        differ = ", ".join(
            f"{k}={theirs.get(k)!r} (config: {ours[k]!r})" for k in ours if theirs.get(k) != ours[k]
        )
        keys = [k for k in ours if theirs.get(k) != ours[k]]
        flags = " ".join(how_to_set(k, theirs.get(k)) for k in keys if has_flag(k))
        others = [k for k in keys if not has_flag(k)]
        if others:  # no flag sets these: the preset (or a TrainConfig in Python) must match
            settings = ", ".join(f"{k}={theirs.get(k)!r}" for k in others)
            advice = (
                f"{', '.join(others)} cannot be set on the command line: start from a checkpoint of a run "
                f"with the same preset, or in Python pass TrainConfig({settings}, ...)"
                + (f" with {flags}" if flags else "")
            )
        else:
            advice = f"pass {flags} (or train from scratch)"
        raise CheckpointError(f"init_from checkpoint {path} has a different U-Net: {differ}; {advice}.")
    state = ckpt["model"]
    check_weights(state, model, path)
    if same_classes:
        model.load_state_dict(state)  # copy_ casts fp16 (exported) weights to the model's fp32
        return []
    head = [k for k in model.state_dict() if k.startswith("head.")]
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")}, strict=False)
    return head


def export_for_inference(src: str | os.PathLike, dst: str | os.PathLike, half: bool = True) -> int:
    """Write a copy of checkpoint ``src`` without optimiser state (fp16 weights if ``half``).

    Returns the size of the written file in bytes.
    """
    ckpt = load_checkpoint(src)
    slim = {k: v for k, v in ckpt.items() if k not in ("optimizer", "scheduler", "scaler", "rng")}
    if half:
        slim["model"] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
        if ckpt.get("ema") is not None:
            weights = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["ema"]["model"].items()}
            slim["ema"] = {**ckpt["ema"], "model": weights}
    atomic_save(slim, dst)
    return Path(dst).stat().st_size
