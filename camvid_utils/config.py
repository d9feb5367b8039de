"""The settings of a training run: ``TrainConfig``, its presets, and the command-line flag of each setting.

Each field of ``TrainConfig`` is a ``setting``: its default, its flag of ``python -m camvid_utils train``
(or ``flag=None`` where only Python and the presets set it), the rule or the choices its values must
follow, and what argparse needs to read it. Everything else is derived from the fields: the ``train``
sub-command's options (``add_arguments``), the settings a command line gave (``given``), the command
that rebuilds a config (``train_command``) and every message that names a setting (``flag``,
``setting_name``), so a flag is written once and cannot drift from the parser.

A config is checked when it is made (and by every ``dataclasses.replace``), before any work: each
value against its rule or choices, then the crop and frame sizes against the U-Net, in the words of
the flags. ``RESUMABLE`` says what a resumed run may change.
"""

from __future__ import annotations

import argparse
import math
import shlex
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from .data import CLASS_SETS
from .encoders import ENCODERS, input_statistics
from .model import EncoderUNetConfig, UNetConfig
from .transforms import MEAN, STD


@dataclass(frozen=True)
class Rule:
    """What a setting's values must be: ``ok(value)``, and the words argparse and the checks say if not.

    Called with the text of a command-line argument (argparse's ``type``), returns it read as ``kind``.
    """

    kind: type
    ok: Callable[[Any], bool]
    must: str  # "must be a positive integer, got {}"

    def __call__(self, text: str):
        try:
            value = self.kind(text)
        except ValueError:
            value = None
        if value is None or not self.ok(value):
            raise argparse.ArgumentTypeError(self.must.format(text))
        return value

    def check(self, value) -> bool:
        """Return whether ``value`` (a tuple: each of its items) follows the rule."""
        try:
            return all(self.ok(v) for v in (value if isinstance(value, tuple) else (value,)))
        except (TypeError, ValueError):  # a value of the wrong type, such as lr="0.1"
            return False


def _is_device(text) -> bool:
    try:
        torch.device(text)
    except (RuntimeError, TypeError):
        return False
    return True


positive_int = Rule(int, lambda v: v >= 1 and v == int(v), "must be a positive integer, got {}")
count = Rule(int, lambda v: v >= 0 and v == int(v), "must be 0 or more, got {}")
integer = Rule(int, lambda v: v == int(v), "must be an integer, got {}")
positive_float = Rule(float, lambda v: v > 0 and math.isfinite(v), "must be a positive finite number, got {}")
non_negative = Rule(float, lambda v: v >= 0 and math.isfinite(v), "must be 0 or more, got {}")
fraction = Rule(float, lambda v: 0 <= v <= 1, "must lie between 0 and 1, got {}")
ema_decay = Rule(float, lambda v: 0 < v < 1, "must lie between 0 and 1 (such as 0.999), got {}")
device_name = Rule(str, _is_device, "expected cpu, cuda, cuda:N or mps, got {!r}")


def setting(
    default,
    *,
    flag: str | None,
    rule: Rule | None = None,
    choices: tuple | None = None,
    none: str | None = None,
    cli_default: bool = False,
    **parser,
) -> Field:
    """Return a ``TrainConfig`` field whose metadata says how its value is set and checked.

    ``flag``: the ``train`` option, or None for a setting of Python and the presets only. ``rule`` or
    ``choices``: what its values must be (None always passes where it is the default). ``none``: the
    word that stands for None on the command line. ``cli_default``: the parser fills the default in
    (the command needs the value itself). ``parser``: further ``add_argument`` keywords.
    """
    meta = dict(flag=flag, rule=rule, choices=choices, none=none, cli_default=cli_default, parser=parser)
    return field(default=default, metadata=meta)


AMP_MODES = ("auto", "bf16", "fp16", "off")  # see runtime.autocast_dtype
DATA_PATHS = ("auto", "loader", "device")  # see training.uses_device_augment
CLASS_WEIGHTS = (None, "inverse_sqrt", "median_frequency")  # see losses.class_weights
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("none", "poly", "onecycle")


@dataclass
class TrainConfig:
    """Everything a training run needs. The defaults are the seed project's setup: its U-Net (base 64,
    bilinear up-sampling) on 128x128 inputs, batch 4, SGD at lr 0.0005, focal loss, mIoU to select.

    ``TrainConfig.cpu_fast(data)`` and ``TrainConfig.gpu(data)`` are the presets worth using.
    """

    data: str = setting(
        "data/camvid", flag="--data", required=True, help="CamVid folder (Kaggle or SegNet layout)"
    )
    class_set: str | None = setting(
        None, flag="--class-set", choices=(None, *CLASS_SETS), help="default: the layout's own classes"
    )
    out: str = setting(
        "runs/unet", flag="--out", cli_default=True, help="folder for checkpoints and history.json"
    )
    epochs: int = setting(20, flag="--epochs", rule=positive_int)
    batch_size: int = setting(
        4,
        flag="--batch-size",
        rule=positive_int,
        help="the global batch; under torchrun split across the processes",
    )
    optimizer: str = setting("sgd", flag=None, choices=OPTIMIZERS)
    lr: float = setting(5e-4, flag="--lr", rule=positive_float)
    momentum: float = setting(0.9, flag=None, rule=non_negative)
    weight_decay: float = setting(1e-4, flag=None, rule=non_negative)
    schedule: str = setting("none", flag=None, choices=SCHEDULES)
    gamma: float = setting(2.0, flag=None, rule=non_negative)
    alpha: str | None = setting(
        None,
        flag="--class-weights",
        choices=CLASS_WEIGHTS,
        none="none",
        help="per-class focal-loss alpha from training pixel counts (presets: inverse_sqrt)",
    )
    image_size: tuple[int, int] = setting(
        (128, 128),
        flag="--image-size",
        rule=positive_int,
        nargs=2,
        metavar=("H", "W"),
        help="size the model sees frames at (evaluation still scores at full size)",
    )
    crop_size: tuple[int, int] | None = setting(
        None,
        flag="--crop-size",
        rule=positive_int,
        nargs=2,
        metavar=("H", "W"),
        help="random training crops of the resized frame (default: no crop)",
    )
    scale: tuple[float, float] = setting((1.0, 1.0), flag=None, rule=positive_float)
    hflip: float = setting(0.0, flag=None, rule=fraction)
    jitter: float = setting(0.0, flag=None, rule=non_negative)
    base_channels: int = setting(64, flag="--base-channels", rule=positive_int)
    depth: int = setting(4, flag=None, rule=positive_int)
    bilinear: bool = setting(True, flag=None)
    max_channels: int | None = setting(None, flag=None, rule=positive_int)
    encoder: str | None = setting(
        None,
        flag="--encoder",
        choices=(None, *ENCODERS),
        none="none",
        help="a U-Net on this ImageNet encoder (lite0: bundled weights, works offline; the others download "
        "torchvision's once) instead of the course's U-Net (default none); --base-channels sets its "
        "decoder's width (16 is a good start)",
    )
    pretrained: bool = setting(  # a switch: given alone when False
        True,
        flag="--no-pretrained",
        help="with --encoder: start the encoder from random weights instead of ImageNet's (the control)",
    )
    freeze_epochs: int = setting(
        0,
        flag="--freeze-epochs",
        rule=count,
        metavar="N",
        help="with --encoder: train only the decoder for the first N epochs, the encoder's weights and "
        "batch-norm statistics frozen (default 0)",
    )
    encoder_lr_factor: float = setting(
        1.0,
        flag="--encoder-lr-factor",
        rule=positive_float,
        metavar="F",
        help="with --encoder: the encoder learns at F times --lr (default 1)",
    )
    amp: str = setting(
        "auto",
        flag="--amp",
        choices=AMP_MODES,
        help="mixed precision (default auto: bf16 or fp16 on CUDA, bf16 on CPUs with it; off: fp32)",
    )
    data_path: str = setting(
        "auto",
        flag="--data-path",
        choices=DATA_PATHS,
        help="training batches from a DataLoader or augmented on the device from the preloaded split "
        "(default auto: device on CUDA, loader elsewhere)",
    )
    sync_bn: bool = setting(  # a switch: given alone when True
        False,
        flag="--sync-bn",
        help="under torchrun on CUDA: batch-norm statistics over the global batch (SyncBatchNorm)",
    )
    channels_last: bool = setting(True, flag=None)
    num_workers: int = setting(
        2, flag="--workers", rule=count, metavar="WORKERS", help="DataLoader worker processes (0: none)"
    )
    device: str | None = setting(
        None, flag="--device", rule=device_name, help="cuda, cuda:N, mps or cpu (default: the best available)"
    )
    seed: int = setting(0, flag="--seed", rule=integer)
    init_from: str | None = setting(
        None,
        flag="--init-from",
        metavar="CHECKPOINT",
        help="start from these weights with a fresh optimiser and schedule (fine-tuning, a new cycle)",
    )
    eval_every: int = setting(
        1, flag="--eval-every", rule=positive_int, help="validate every N epochs (default 1)"
    )
    ema: float | None = setting(  # see ema.py
        None,
        flag="--ema",
        rule=ema_decay,
        metavar="DECAY",
        help="keep an exponential moving average of the weights with this decay (such as 0.999), saved in "
        "the checkpoints and used for validation and by evaluate/predict (default: none)",
    )
    max_train_batches: int | None = setting(
        None, flag=None, rule=positive_int
    )  # cap per epoch, for smoke runs
    max_eval_images: int | None = setting(None, flag=None, rule=positive_int)

    def __post_init__(self) -> None:
        for f in fields(self):
            check_setting(f, getattr(self, f.name))
        check_encoder(self)
        check_sizes(self)

    @property
    def model_depth(self) -> int:
        """How many times the model halves the frame: ``depth``, or 5 for an encoder."""
        return EncoderUNetConfig.depth if self.encoder is not None else self.depth

    @classmethod
    def cpu_fast(cls, data: str = "data/camvid", **overrides) -> TrainConfig:
        """A narrow U-Net on 240x320 crops of full-resolution frames with AdamW and one-cycle."""
        return replace(cls(data=data), **{**_FAST, **overrides})

    @classmethod
    def gpu(cls, data: str = "data/camvid", **overrides) -> TrainConfig:
        """The full-width U-Net at full resolution, batch 8, AdamW and one-cycle, mixed precision."""
        return replace(cls(data=data), **{**_GPU, **overrides})

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Rebuild a config saved with ``asdict`` (tuples come back from lists)."""
        known = {f.name for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known}
        return cls(**values)

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Return the (mean, std) the model's inputs are normalised with: its encoder's, or ImageNet's."""
        return (MEAN, STD) if self.encoder is None else input_statistics(self.encoder)

    def unet(self, num_classes: int) -> UNetConfig:
        """Return the hyper-parameters of the U-Net this config trains for ``num_classes`` classes."""
        if self.encoder is not None:
            return EncoderUNetConfig(num_classes, self.encoder, 3, self.base_channels, self.max_channels)
        return UNetConfig(num_classes, 3, self.base_channels, self.depth, self.bilinear, self.max_channels)


# What both presets share: augmentation, class weights, AdamW with a one-cycle schedule.
_COMMON = dict(
    scale=(0.75, 1.5),
    hflip=0.5,
    jitter=0.2,
    alpha="inverse_sqrt",
    bilinear=False,
    optimizer="adamw",
    lr=2e-3,
    weight_decay=1e-4,
    schedule="onecycle",
    batch_size=8,
    image_size=(360, 480),
)
_FAST = dict(_COMMON, epochs=60, crop_size=(240, 320), base_channels=24, num_workers=1)
_GPU = dict(_COMMON, epochs=150, crop_size=(288, 384), base_channels=64, num_workers=4)

# The names of ``--preset``: the seed project's setup and the two presets.
PRESETS = {"seed": TrainConfig, "cpu-fast": TrainConfig.cpu_fast, "gpu": TrainConfig.gpu}

# What a resume may change: where the data and the run are, how it runs, how often it is scored, and
# the number of epochs (for schedules that can follow it). Everything else is the run's own.
RESUMABLE = ("epochs", "data", "out", "device", "num_workers", "eval_every", "max_eval_images")

_FIELDS = {f.name: f for f in fields(TrainConfig)}


def flag(name: str) -> str:
    """Return the command-line flag of ``TrainConfig.<name>`` (``flag("lr")`` is ``"--lr"``).

    Raises ``KeyError`` for a setting without a flag, so that no message names a flag that is not there.
    """
    given = _FIELDS[name].metadata["flag"]
    if given is None:
        raise KeyError(f"TrainConfig.{name} has no command-line flag")
    return given


def has_flag(name: str) -> bool:
    """Return whether ``TrainConfig.<name>`` is set by a flag of the ``train`` command."""
    return name in _FIELDS and _FIELDS[name].metadata["flag"] is not None


def setting_name(name: str) -> str:
    """Return how a user sets ``TrainConfig.<name>``: its command-line flag, or the field's name."""
    return flag(name) if has_flag(name) else name


def shown(value) -> str:
    """Return ``value`` as a message shows it: tuples as their items, None as ``none``."""
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return "none" if value is None else str(value)


def _listed(words) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _spellings(f: Field) -> tuple:
    """The command-line words of a setting's choices (None only where it has a word)."""
    meta = f.metadata
    return tuple(meta["none"] if c is None else c for c in meta["choices"] if c is not None or meta["none"])


def check_setting(f: Field, value) -> None:
    """Raise ``ValueError`` naming the setting's flag when ``value`` breaks its rule or choices."""
    meta, name = f.metadata, setting_name(f.name)
    if meta["choices"] is not None and value not in meta["choices"]:
        if meta["flag"] is None:
            raise ValueError(f"{name}: must be {_listed(map(repr, meta['choices']))}, got {value!r}.")
        python = f" ({meta['none']} is None in Python)" if meta["none"] else ""
        raise ValueError(f"{name}: must be {_listed(_spellings(f))}{python}, got {value!r}.")
    if meta["rule"] is None or (value is None and f.default is None):
        return
    if isinstance(f.default, tuple) or meta["parser"].get("nargs") == 2:
        if not (isinstance(value, tuple) and len(value) == 2):
            raise ValueError(
                f"{name}: must be two values (height and width, or low and high), got {value!r}."
            )
    if not meta["rule"].check(value):
        raise ValueError(f"{name}: {meta['rule'].must.format(shown(value))}.")


def check_encoder(cfg: TrainConfig) -> None:
    """Raise ``ValueError`` for an encoder setting given without ``--encoder``, which would do nothing."""
    if cfg.encoder is not None:
        return
    given = [
        how_to_set(name, getattr(cfg, name))
        for name in ("pretrained", "freeze_epochs", "encoder_lr_factor")
        if getattr(cfg, name) != _FIELDS[name].default
    ]
    if given:
        raise ValueError(
            f"{', '.join(given)} applies to a U-Net on a pretrained encoder; add {flag('encoder')} lite0 "
            f"(or another of {', '.join(ENCODERS)}), or drop it."
        )


def check_sizes(cfg: TrainConfig) -> None:
    """Raise ``ValueError`` for sizes that would train on something other than what was asked."""
    low, high = cfg.scale
    if low > high:
        raise ValueError(f"scale {low} {high}: the smaller scale comes first; pass scale=({high}, {low}).")
    if cfg.crop_size is not None and any(c > s for c, s in zip(cfg.crop_size, cfg.image_size, strict=True)):
        crop, size = shown(cfg.crop_size), shown(cfg.image_size)
        raise ValueError(
            f"{flag('crop_size')} {crop} is larger than {flag('image_size')} {size}: crops "
            "are cut from the frame resized to the image size, so most of each crop would be void padding. "
            "Choose a crop no larger than the image size."
        )
    depth = cfg.model_depth
    smallest = 2**depth  # every level halves the frame: each side must survive depth halvings
    for name in ("image_size", "crop_size"):
        size = getattr(cfg, name)
        if size is not None and any(s < smallest for s in size):
            fixed = " ".join(str(max(smallest, s)) for s in size)
            raise ValueError(
                f"{flag(name)} {shown(size)} is below {smallest} {smallest}, the "
                f"smallest a U-Net of depth {depth} can take (each of its levels halves the frame). Pass "
                f"{flag(name)} {fixed} or larger."
            )
    h, w = cfg.crop_size or cfg.image_size
    if cfg.batch_size * (h >> depth) * (w >> depth) < 2:  # batch norm needs two values per channel
        raise ValueError(
            f"{flag('batch_size')} {cfg.batch_size} of {h}x{w} frames leaves the U-Net's "
            f"bottleneck {h >> depth}x{w >> depth} with one value per channel, and batch norm "
            "cannot train on one. "
            f"Pass {flag('batch_size')} 2 or a larger {flag('image_size')}."
        )


def resume_config(cfg: TrainConfig, saved: TrainConfig, done: int) -> TrainConfig:
    """Return the config a resumed run continues with: ``saved`` with ``cfg``'s ``RESUMABLE`` settings.

    ``done`` is the number of epochs the run has finished. Raises ``ValueError`` for any other
    setting that differs from the saved one, and for ``epochs`` the schedule cannot follow.
    """
    last = Path(cfg.out) / "last.pt"
    new_cycle = (
        f"start a new cycle from its weights with a fresh optimiser and schedule: {flag('init_from')} {last}"
    )
    changed = [
        f.name
        for f in fields(TrainConfig)
        if f.name not in RESUMABLE and getattr(cfg, f.name) != getattr(saved, f.name)
    ]
    if changed:
        asked = " ".join(f"{setting_name(k)} {shown(getattr(cfg, k))}" for k in changed)
        kept = ", ".join(f"{setting_name(k)} {shown(getattr(saved, k))}" for k in changed)
        raise ValueError(
            f"{last} continues its run as saved ({kept}); a resume may change only "
            f"{', '.join(setting_name(k) for k in RESUMABLE)}. Drop {asked} to continue it, or "
            f"{new_cycle} {asked} {flag('out')} NEW_FOLDER."
        )
    epochs = flag("epochs")
    if cfg.epochs < done:
        raise ValueError(f"{last} has already trained {done} epochs; {epochs} must be at least {done}.")
    if cfg.epochs != saved.epochs and saved.schedule == "onecycle":
        raise ValueError(
            f"{last} follows a one-cycle schedule planned for {saved.epochs} epochs; a cycle cannot "
            f"be stretched to {cfg.epochs}. Resume with {epochs} {saved.epochs} to finish it, or "
            f"{new_cycle} {epochs} N {flag('out')} NEW_FOLDER."
        )
    return replace(saved, **{k: getattr(cfg, k) for k in RESUMABLE})


def _switch(f: Field) -> bool:
    return isinstance(f.default, bool)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one option per ``TrainConfig`` setting that has a flag to the ``train`` sub-command."""
    for f in fields(TrainConfig):
        meta = f.metadata
        if meta["flag"] is None:
            continue
        options = dict(meta["parser"], dest=f.name)
        if _switch(f):  # the flag turns the default around
            options.update(action="store_false" if f.default else "store_true", default=None)
        else:
            options.update(default=f.default if meta["cli_default"] else None)
        if meta["rule"] is not None:
            options["type"] = meta["rule"]
        if meta["choices"] is not None:
            options["choices"] = _spellings(f)
        parser.add_argument(meta["flag"], **options)


def given_settings(args: argparse.Namespace) -> dict:
    """Return the settings a parsed ``train`` command line gives explicitly, as ``TrainConfig`` fields."""
    chosen = {}
    for f in fields(TrainConfig):
        value = getattr(args, f.name, None) if f.metadata["flag"] else None
        if value is None:
            continue
        if isinstance(value, list):
            value = tuple(value)
        chosen[f.name] = None if value == f.metadata["none"] else value
    return chosen


def flag_words(name: str, value) -> list[str] | None:
    """Return the command-line words that set ``TrainConfig.<name>`` to ``value``, or None if none can.

    A switch is its flag alone when ``value`` differs from its default and no words when it does not;
    None is the setting's ``none`` word.
    """
    f = _FIELDS[name]
    meta = f.metadata
    if meta["flag"] is None:
        return None
    if _switch(f):
        return [meta["flag"]] if value != f.default else []
    if value is None:
        return None if meta["none"] is None else [meta["flag"], meta["none"]]
    return [meta["flag"], *map(str, value if isinstance(value, tuple) else (value,))]


def how_to_set(name: str, value) -> str:
    """Return how a user sets ``TrainConfig.<name>`` to ``value``: flag and value, or in Python."""
    words = flag_words(name, value)
    if words:
        return shlex.join(words)
    if words == []:
        return f"leave out {flag(name)}"
    return f"TrainConfig({name}={value!r})"


def train_command(cfg: TrainConfig) -> str | None:
    """Return a ``train`` command line that builds ``cfg``, or None if a setting has no flag."""
    for preset_name, preset in PRESETS.items():
        base = preset(data=cfg.data)
        differ = {
            f.name: getattr(cfg, f.name)
            for f in fields(TrainConfig)
            if getattr(cfg, f.name) != getattr(base, f.name)
        }
        words = {k: flag_words(k, v) for k, v in differ.items() if k != "data"}
        if any(not w for w in words.values()):  # no flag, or a switch that no flag turns off
            continue
        parts = ["python", "-m", "camvid_utils", "train", flag("data"), cfg.data]
        parts += [] if preset_name == "seed" else ["--preset", preset_name]
        for w in words.values():
            parts += w
        if "out" not in differ:
            parts += [flag("out"), cfg.out]
        return shlex.join(parts)
    return None
