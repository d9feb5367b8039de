"""Checkpoints: atomic writes that say why they failed, safe loads with clear errors, class checks."""

import errno
import os
import re

import numpy as np
import pytest
import torch

from camvid_utils import checkpoint as ckpt_mod
from camvid_utils.checkpoint import (
    CheckpointError,
    atomic_save,
    check_classes,
    load_checkpoint,
    load_model,
    load_training_checkpoint,
)
from camvid_utils.runtime import get_rng_state, seed_everything, set_rng_state


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"epoch": 1}, path)

    def crash(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_mod.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"epoch": 2}, path)
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_bad_checkpoint_files_give_clear_errors(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(
        CheckpointError, match=r"junk.pt is not a PyTorch checkpoint \(it starts with b'not '\)"
    ):
        load_model(tmp_path / "junk.pt")
    torch.save({"model": {}}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="not a camvid_utils checkpoint"):
        load_model(tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.pt")


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    seed_everything(5)
    atomic_save({"rng": get_rng_state()}, tmp_path / "rng.pt")
    expected = (np.random.rand(), torch.rand(1).item())  # noqa: NPY002 (the seeded global generator)
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    assert (np.random.rand(), torch.rand(1).item()) == expected  # noqa: NPY002


def _full_disk(monkeypatch):
    """Make every checkpoint write land on /dev/full, which fails with ENOSPC like a full disk."""
    real_fdopen = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        os.close(fd)
        return real_fdopen(os.open("/dev/full", os.O_WRONLY), mode, *args, **kwargs)

    monkeypatch.setattr(ckpt_mod.os, "fdopen", fdopen)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_a_full_disk_says_so_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"epoch": 1, "weights": torch.zeros(10)}, path)
    _full_disk(monkeypatch)
    with pytest.raises(
        CheckpointError, match=r"cannot write .*last.pt: no space left on the disk that holds"
    ) as err:
        atomic_save({"epoch": 2, "weights": torch.ones(1000)}, path)
    assert "the previous last.pt is unchanged" in str(err.value) and "unexpected pos" not in str(err.value)
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_no_permission_says_so(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(ckpt_mod.tempfile, "mkstemp", refuse)
    with pytest.raises(CheckpointError, match=r"no permission to write in .*; no best.pt was written"):
        atomic_save({"epoch": 1}, tmp_path / "best.pt")


@pytest.mark.parametrize(
    "content",
    [b"epoch,loss\n1,0.5\n", b"\x80\x04not really a pickle", b"PK\x03\x04truncated zip"],
    ids=["text", "bad pickle", "truncated zip"],
)
def test_foreign_files_get_no_unsafe_loading_advice(tmp_path, content):
    (tmp_path / "x.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match=r"x.pt") as err:
        load_checkpoint(tmp_path / "x.pt")
    assert "weights_only" not in str(err.value) and "\n" not in str(err.value)


def test_a_pickled_object_is_refused_without_advising_an_unsafe_load(tmp_path):
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "module.pt")  # a whole module: not weights
    with pytest.raises(CheckpointError, match="not a camvid_utils checkpoint") as err:
        load_checkpoint(tmp_path / "module.pt")
    assert "weights_only" not in str(err.value)


def test_an_exported_model_cannot_be_resumed_and_names_init_from(tmp_path):
    slim = {k: [] for k in ckpt_mod.REQUIRED_KEYS}
    torch.save(slim, tmp_path / "slim.pt")
    with pytest.raises(CheckpointError, match=r"no optimiser state .*--init-from .*slim.pt"):
        load_training_checkpoint(tmp_path / "slim.pt")


def test_a_class_mismatch_names_the_classes_that_differ():
    with pytest.raises(CheckpointError) as err:
        check_classes(
            ("Sky", "Road", "Car"), ("Sky", "Road", "Truck", "Bus"), "m.pt", "data/x", advice="do this"
        )
    text = str(err.value)
    assert "only the checkpoint has Car" in text and "only the data has Truck, Bus" in text
    assert text.endswith("; do this.") and "--class-set" not in text
    with pytest.raises(CheckpointError, match="same classes in another order"):
        check_classes(("Sky", "Road"), ("Road", "Sky"), "m.pt", "data/x")


def test_a_torch_older_than_the_safe_floor_warns_naming_the_advisories(tmp_path, monkeypatch):
    torch.save({k: [] for k in ckpt_mod.REQUIRED_KEYS}, tmp_path / "ok.pt")
    monkeypatch.setattr(ckpt_mod, "_warned_torch", False)
    monkeypatch.setattr(torch, "__version__", "2.5.1+cpu")
    with pytest.warns(UserWarning, match=r"torch 2\.5\.1.*CVE-2025-32434.*GHSA-63cw-57p8-fm3p.*torch>=2\.10"):
        load_checkpoint(tmp_path / "ok.pt")
    monkeypatch.setattr(ckpt_mod, "_warned_torch", False)
    monkeypatch.setattr(torch, "__version__", "2.10.0")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_checkpoint(tmp_path / "ok.pt")


def _small_checkpoint(**changes) -> dict:
    from camvid_utils.model import UNet, UNetConfig

    config = UNetConfig(num_classes=3, base_channels=4, depth=2)
    ckpt = {
        "model": UNet.from_config(config).state_dict(),
        "model_config": {"num_classes": 3, "base_channels": 4, "depth": 2},
        "classes": ["a", "b", "c"],
        "colors": [[1, 2, 3], [4, 5, 6], [7, 8, 9]],
        "class_set": None,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.2, 0.2, 0.2],
        "image_size": [48, 64],
    }
    return {**ckpt, **changes}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"classes": ["a", "b"]}, r"2 class names for a model with 3 outputs"),
        ({"colors": [[1, 2, 3]]}, r"1 colours for 3 classes"),
        ({"colors": [[1, 2], [4, 5], [7, 8]]}, r"colours must be \(r, g, b\) triples in 0\.\.255"),
        ({"image_size": [0, 64]}, r"image_size \[0, 64\] must be two positive integers"),
        ({"std": [0.2, 0.0, 0.2]}, r"std \[0\.2, 0\.0, 0\.2\] must be 3 positive numbers"),
        ({"mean": [0.5]}, r"mean \[0\.5\] must be 3 finite numbers"),
        ({"model_config": {"num_classes": 3, "widht": 4}}, r"model_config .*widht"),
        ({"model_config": "unet"}, r"model_config"),
    ],
    ids=["classes", "colors", "colour-triples", "image-size", "std", "mean", "config-key", "config-type"],
)
def test_inconsistent_metadata_is_one_error_naming_the_file_and_the_field(tmp_path, changes, message):
    path = tmp_path / "odd.pt"
    torch.save(_small_checkpoint(**changes), path)
    with pytest.raises(CheckpointError, match=message) as err:
        load_model(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_consistent_small_checkpoint_loads(tmp_path):
    torch.save(_small_checkpoint(), tmp_path / "fine.pt")
    loaded = load_model(tmp_path / "fine.pt")
    assert loaded.classes == ("a", "b", "c") and loaded.image_size == (48, 64)


def test_init_from_another_architecture_names_what_differs_and_no_unrelated_flag(tmp_path):
    from camvid_utils.checkpoint import load_initial_weights
    from camvid_utils.model import UNet

    torch.save(
        _small_checkpoint(model_config={"num_classes": 3, "base_channels": 4, "depth": 2}), tmp_path / "a.pt"
    )
    bilinear = UNet(3, 3, 4, 2, True)
    with pytest.raises(
        CheckpointError, match=r"bilinear=False \(config: True\).*TrainConfig\(bilinear=False"
    ) as err:
        load_initial_weights(bilinear, tmp_path / "a.pt", ("a", "b", "c"), "data")
    assert "--base-channels" not in str(err.value)
    wider = UNet(3, 3, 8, 2, False)
    with pytest.raises(CheckpointError, match=r"pass --base-channels 4"):
        load_initial_weights(wider, tmp_path / "a.pt", ("a", "b", "c"), "data")


def test_ctrl_c_inside_torch_save_stays_an_interruption_not_a_write_error(tmp_path, monkeypatch):
    """torch's zip writer turns a KeyboardInterrupt in its file callback into "file write failed"."""
    atomic_save({"epoch": 1}, tmp_path / "last.pt")

    def interrupted_write(obj, f):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed") from None

    monkeypatch.setattr(torch, "save", interrupted_write)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"epoch": 2}, tmp_path / "last.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


@pytest.mark.parametrize("damage", ["nan", "inf", "integers"])
def test_weights_that_cannot_be_a_trained_models_are_refused_by_name(tmp_path, damage):
    from camvid_utils.checkpoint import load_initial_weights, load_model
    from camvid_utils.model import UNet

    torch.manual_seed(0)
    model = UNet(3, base_channels=4, depth=2)
    state = model.state_dict()
    weight = "downs.0.1.0.weight"
    state[weight] = {
        "nan": state[weight].clone().fill_(float("nan")),
        "inf": state[weight].clone().fill_(float("inf")),
        "integers": state[weight].round().to(torch.int64),
    }[damage]
    path = tmp_path / "damaged.pt"
    torch.save(
        {
            "model": state,
            "model_config": {"num_classes": 3, "base_channels": 4, "depth": 2},
            "classes": ["a", "b", "c"],
            "colors": [[0, 0, 0], [1, 1, 1], [2, 2, 2]],
            "mean": [0.5] * 3,
            "std": [0.25] * 3,
            "image_size": [24, 32],
        },
        path,
    )
    expected = "NaN or infinity" if damage != "integers" else "not floating point"
    with pytest.raises(CheckpointError, match=rf"damaged\.pt: weights? {re.escape(weight)}.*{expected}"):
        load_model(path)
    with pytest.raises(CheckpointError, match=rf"damaged\.pt: .*{expected}"):
        load_initial_weights(UNet(3, base_channels=4, depth=2), path, ["a", "b", "c"], "data")
