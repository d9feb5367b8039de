"""TrainConfig's settings: one flag per field, derived parser and commands, checks when a config is made."""

from __future__ import annotations

import shlex
from dataclasses import asdict, fields, replace

import pytest

from camvid_utils import cli
from camvid_utils.config import (
    PRESETS,
    RESUMABLE,
    TrainConfig,
    flag,
    given_settings,
    has_flag,
    how_to_set,
    setting_name,
    train_command,
)
from camvid_utils.model import UNet, UNetConfig

FLAGGED = [f.name for f in fields(TrainConfig) if has_flag(f.name)]

# A value other than the seed setup's (and the presets') for every setting with a flag.
CHANGED = dict(
    data="data/my camvid",
    class_set="camvid11",
    out="runs/a b",
    epochs=7,
    batch_size=6,
    lr=1e-3,
    alpha="median_frequency",
    image_size=(96, 128),
    crop_size=(64, 96),
    base_channels=8,
    amp="bf16",
    data_path="loader",
    sync_bn=True,
    num_workers=0,
    device="cpu",
    seed=3,
    init_from="runs/x y/best.pt",
    eval_every=2,
    ema=0.99,
    encoder="lite0",
    pretrained=False,
    freeze_epochs=2,
    encoder_lr_factor=0.1,
)


def _train_actions():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices["train"]._actions


def _config_of(command: str) -> TrainConfig:
    """The TrainConfig a printed ``train`` command builds, the way ``cli._train`` builds it."""
    args = cli.build_parser().parse_args(shlex.split(command)[3:])
    return replace(PRESETS[args.preset or "seed"](data=args.data), **given_settings(args))


def test_every_field_says_its_flag_or_that_it_has_none():
    # A field added without ``setting(..., flag=...)`` would have no flag, no parser option, no advice.
    for f in fields(TrainConfig):
        assert "flag" in f.metadata, f"TrainConfig.{f.name} is not a setting(...): give it flag=... or None"
        assert f.metadata["flag"] is None or f.metadata["flag"].startswith("--"), f.name


def test_the_train_parser_holds_exactly_one_option_per_flagged_setting():
    actions = _train_actions()
    by_dest = {}
    for action in actions:
        by_dest.setdefault(action.dest, []).append(action.option_strings)
    for name in FLAGGED:
        assert by_dest.get(name) == [[flag(name)]], name
    settings = {f.name for f in fields(TrainConfig)}
    others = {opt for a in actions if a.dest not in settings for opt in a.option_strings}
    assert others == {"-h", "--help", "--preset", "--resume", "--overwrite"}
    assert not [n for n in settings - set(FLAGGED) if n in by_dest]  # no option for a Python-only setting


def test_the_changed_values_cover_every_flagged_setting():
    # A new flagged setting must join CHANGED, and so the round trip below.
    assert set(CHANGED) == set(FLAGGED)
    for name, value in CHANGED.items():
        assert all(value != getattr(make(data="d"), name) for make in PRESETS.values()), name


@pytest.mark.parametrize("preset", list(PRESETS))
def test_a_preset_survives_train_command_and_the_parser(preset):
    cfg = PRESETS[preset](data="data/my camvid")
    command = train_command(cfg)
    assert command is not None and _config_of(command) == cfg, command


@pytest.mark.parametrize("preset", list(PRESETS))
def test_a_config_with_every_flagged_setting_changed_survives_the_round_trip(preset):
    cfg = replace(PRESETS[preset](data="d"), **CHANGED)
    command = train_command(cfg)
    assert command is not None, cfg
    assert _config_of(command) == cfg, command


@pytest.mark.parametrize(
    "change",
    [{"lr": 1e-4}, {"epochs": 3}, {"crop_size": (64, 96)}, {"alpha": None}, {"sync_bn": True},
     {"eval_every": 2}, {"seed": 7}, {"init_from": "runs/a b/best.pt"}, {"data_path": "loader"}],
    ids=lambda change: next(iter(change)),
)  # fmt: skip
def test_train_command_rebuilds_the_config_it_was_made_from(change):
    """The "Run:" advice after a divergence is train_command's: every flag-able setting must survive it."""
    cfg = replace(PRESETS["cpu-fast"](data="data/my camvid"), out="runs/x", **change)
    command = train_command(cfg)
    assert command is not None, f"no command for {change}"
    assert _config_of(command) == cfg, command


def test_a_setting_without_a_flag_gives_no_command():
    assert train_command(TrainConfig(momentum=0.5)) is None
    assert train_command(TrainConfig.cpu_fast("d", crop_size=None)) is None  # no flag turns a crop off


@pytest.mark.parametrize("name", [f.name for f in fields(TrainConfig)])
def test_there_is_advice_for_every_setting(name):
    value = CHANGED.get(name, getattr(TrainConfig.gpu(), name))
    line = how_to_set(name, value)
    assert line, name
    if not has_flag(name):
        assert line == f"TrainConfig({name}={value!r})"
        with pytest.raises(KeyError, match=name):
            flag(name)
        return
    assert line.startswith(flag(name))
    argv = ["train", *(["--data", "d"] if name != "data" else []), *shlex.split(line)]
    assert given_settings(cli.build_parser().parse_args(argv))[name] == value


@pytest.mark.parametrize(
    "name", [f.name for f in fields(TrainConfig) if f.metadata["choices"] or f.metadata["rule"]]
)
def test_a_bad_value_is_refused_when_the_config_is_made_naming_its_flag(name):
    with pytest.raises(ValueError, match=f"^{setting_name(name)}: (must|expected)"):
        TrainConfig(**{name: "bogus"})
    with pytest.raises(ValueError, match=f"^{setting_name(name)}: (must|expected)"):
        replace(TrainConfig(), **{name: "bogus"})  # replace checks too, as a resume does


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"schedule": "cosine"}, r"^schedule: must be 'none', 'poly' or 'onecycle', got 'cosine'"),
        (
            {"alpha": "none"},
            r"^--class-weights: must be none, inverse_sqrt or median_frequency \(none is None",
        ),
        ({"lr": float("nan")}, r"^--lr: must be a positive finite number, got nan"),
        ({"epochs": 0}, r"^--epochs: must be a positive integer, got 0"),
        ({"ema": 1.0}, r"^--ema: must lie between 0 and 1"),
        ({"device": "gpu"}, r"^--device: expected cpu, cuda, cuda:N or mps, got 'gpu'"),
        ({"hflip": 1.5}, r"^hflip: must lie between 0 and 1, got 1.5"),
        ({"crop_size": (64,)}, r"^--crop-size: must be two values"),
        ({"scale": (1.5, 0.75)}, r"the smaller scale comes first"),
        ({"crop_size": (256, 128)}, r"--crop-size 256 128 is larger than --image-size 128 128"),
    ],
)
def test_settings_are_checked_in_the_words_of_their_flags(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


def test_the_parser_refuses_what_the_config_refuses_in_the_flag_s_words(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train", "--data", "d", "--class-weights", "inverse"])
    assert "--class-weights: invalid choice: 'inverse'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train", "--data", "d", "--epochs", "two"])
    assert "argument --epochs: must be a positive integer, got two" in capsys.readouterr().err


def test_a_saved_config_dict_loads_onto_the_same_fields():
    cfg = TrainConfig.gpu("d", **{k: v for k, v in CHANGED.items() if k != "data"})
    saved = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}  # as torch.load gives
    assert TrainConfig.from_dict({**saved, "a_setting_of_later_versions": 1}) == cfg


def test_resumable_settings_are_settings():
    assert set(RESUMABLE) <= {f.name for f in fields(TrainConfig)}


def test_the_unet_is_built_from_the_config():
    cfg = TrainConfig.cpu_fast("d", max_channels=96)
    unet = cfg.unet(11)
    assert unet == UNetConfig(11, 3, 24, 4, False, 96)
    assert UNet.from_config(unet).config == unet
