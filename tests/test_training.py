"""Training engine, checkpoints, resume (also after a kill) and the command line, on the sample."""

import copy
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch

from camvid_utils import checkpoint as ckpt_mod
from camvid_utils.checkpoint import CheckpointError, load_checkpoint, load_model
from camvid_utils.config import TrainConfig
from camvid_utils.data import CamVid
from camvid_utils.losses import FocalLoss
from camvid_utils.model import UNet
from camvid_utils.runtime import seed_everything
from camvid_utils.training import _loader, fit, train_one_epoch
from conftest import REPO, SAMPLE, tiny


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    history = fit(tiny(out, class_set="camvid11", alpha="inverse_sqrt"), log=lambda *_: None)
    return out, history


def test_defaults_are_the_seed_setup_and_presets_are_one_line():
    cfg = TrainConfig()
    assert (cfg.batch_size, cfg.optimizer, cfg.lr, cfg.gamma) == (4, "sgd", 5e-4, 2.0)
    assert (cfg.base_channels, cfg.bilinear) == (64, True)
    fast, gpu = TrainConfig.cpu_fast("d"), TrainConfig.gpu("d", epochs=3)
    assert fast.data == "d" and fast.optimizer == "adamw" and fast.schedule == "onecycle"
    assert gpu.epochs == 3 and gpu.base_channels == 64


def test_fit_writes_checkpoints_and_history(trained):
    out, history = trained
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(h["train_loss"] > 0 and 0 <= h["val_miou"] <= 1 and h["lr"] > 0 for h in history)
    assert json.loads((out / "history.json").read_text()) == history
    last = load_checkpoint(out / "last.pt")
    assert last["epoch"] == 1 and last["history"] == history
    assert {"optimizer", "scheduler", "rng", "alpha"} <= set(last)
    assert last["classes"][3] == "Road" and len(last["classes"]) == 11
    assert last["alpha"].shape == (11,) and last["image_size"] == [48, 64]
    best = load_checkpoint(out / "best.pt")
    assert best["best_miou"] == max(h["val_miou"] for h in history)
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


def test_load_model_returns_a_ready_model(trained):
    out, _ = trained
    loaded = load_model(out / "best.pt")
    assert not loaded.model.training and loaded.image_size == (48, 64) and loaded.class_set == "camvid11"
    ckpt = torch.load(out / "best.pt", weights_only=True)
    for key, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, ckpt["model"][key])


def test_export_for_inference_is_slim_and_equivalent(trained, tmp_path):
    out, _ = trained
    size = ckpt_mod.export_for_inference(out / "best.pt", tmp_path / "slim.pt")
    slim = load_checkpoint(tmp_path / "slim.pt")
    assert "optimizer" not in slim and size < (out / "best.pt").stat().st_size
    x = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        a, b = load_model(out / "best.pt").model(x), load_model(tmp_path / "slim.pt").model(x)
    assert (a.argmax(1) == b.argmax(1)).float().mean() > 0.99  # fp16 weights, same predictions


@pytest.mark.slow  # one of the slowest tests: out of the short contributor run
def test_same_seed_gives_the_same_first_epoch_loss(tmp_path):
    runs = [
        fit(tiny(tmp_path / f"r{i}", epochs=1, seed=s), log=lambda *_: None) for i, s in enumerate((7, 7, 8))
    ]
    assert runs[0][0]["train_loss"] == runs[1][0]["train_loss"]
    assert runs[0][0]["train_loss"] != runs[2][0]["train_loss"]


def _straight_and_killed_then_resumed(tmp_path, epochs: int, **overrides):
    """Run ``tiny`` straight through into ``full/``, and killed after epoch 1, then resumed, in ``part/``.

    Returns the straight run's history, the resumed run's history and the killed run's ``last.pt``.
    """
    full = fit(tiny(tmp_path / "full", epochs=epochs, **overrides), log=lambda *_: None)

    def stop_after_first_epoch(line):
        if line.startswith(f"epoch 1/{epochs}"):
            raise KeyboardInterrupt  # as if killed right after the epoch's checkpoint

    with pytest.raises(KeyboardInterrupt):
        fit(tiny(tmp_path / "part", epochs=epochs, **overrides), log=stop_after_first_epoch)
    killed = load_checkpoint(tmp_path / "part/last.pt")
    resumed = fit(tiny(tmp_path / "part", epochs=epochs, **overrides), resume=True, log=lambda *_: None)
    return full, resumed, killed


@pytest.mark.slow
def test_resume_continues_exactly_where_an_uninterrupted_run_would_be(tmp_path):
    full, resumed, killed = _straight_and_killed_then_resumed(tmp_path, 3, schedule="poly")
    assert killed["epoch"] == 0
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(resumed) == strip(full)
    a, b = load_checkpoint(tmp_path / "full/last.pt"), load_checkpoint(tmp_path / "part/last.pt")
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0)


@pytest.mark.slow
def test_fp16_trains_with_a_grad_scaler_whose_state_survives_a_resume(tmp_path):
    # The CUDA fp16 path (autocast plus GradScaler) runs on the CPU too, so it is tested here.
    full, resumed, killed = _straight_and_killed_then_resumed(tmp_path, 2, amp="fp16")
    a, b = load_checkpoint(tmp_path / "full/last.pt"), load_checkpoint(tmp_path / "part/last.pt")
    assert all(math.isfinite(h["train_loss"]) for h in full)
    assert [h["train_loss"] for h in resumed] == [h["train_loss"] for h in full]
    # The growth tracker counts steps since the last overflow: it continues past the resume.
    assert b["scaler"]["_growth_tracker"] > killed["scaler"]["_growth_tracker"] > 0
    assert a["scaler"] == b["scaler"] and a["scaler"]["scale"] <= 2.0**16
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0)


def test_a_grad_scaler_step_equals_an_unscaled_step():
    seed_everything(0)
    start = UNet(11, 3, base_channels=4, depth=2)
    batch = [(torch.randn(2, 3, 32, 48), torch.randint(0, 11, (2, 32, 48)))]
    models, loss_fn, cpu = [], FocalLoss(), torch.device("cpu")
    for scaler in (torch.amp.GradScaler("cpu", init_scale=2.0**10), None):
        model = copy.deepcopy(start)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        train_one_epoch(model, batch, loss_fn, optimizer, None, cpu, amp_dtype=torch.float16, scaler=scaler)
        models.append(model)
    scaled, plain = (list(m.parameters()) for m in models)
    assert any((p - q).abs().max() > 1e-4 for p, q in zip(plain, start.parameters(), strict=True))
    for p, q in zip(scaled, plain, strict=True):  # the scaler unscales the gradients before the step
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-5)


def test_loaders_pin_memory_only_for_cuda():
    data = CamVid(SAMPLE, "train")
    assert _loader(data, tiny("unused"), torch.device("cuda"), shuffle=True).pin_memory
    assert not _loader(data, tiny("unused"), torch.device("cpu"), shuffle=True).pin_memory


def _cli(*args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "camvid_utils", *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_losing_only_that_epoch(tmp_path):
    args = [
        "train",
        "--data",
        str(SAMPLE),
        "--epochs",
        "3",
        "--batch-size",
        "2",
        "--image-size",
        "96",
        "128",
        "--base-channels",
        "8",
        "--workers",
        "0",
        "--seed",
        "3",
    ]
    reference = _cli(*args, "--out", str(tmp_path / "ref"))
    victim = _cli(*args, "--out", str(tmp_path / "run"), start_new_session=True)
    history = tmp_path / "run" / "history.json"
    deadline = time.monotonic() + 120
    while not (history.exists() and len(json.loads(history.read_text())) == 1):
        assert victim.poll() is None and time.monotonic() < deadline, victim.communicate()
        time.sleep(0.02)
    os.killpg(victim.pid, signal.SIGKILL)  # in epoch 2, long before its checkpoint
    victim.wait()
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 0  # epoch 2 was cut short
    resumed = _cli(*args, "--out", str(tmp_path / "run"), "--resume")
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert "resumed" in stdout and "after epoch 1" in stdout
    assert reference.wait(timeout=300) == 0
    ours = json.loads(history.read_text())
    theirs = json.loads((tmp_path / "ref" / "history.json").read_text())
    assert [h["epoch"] for h in ours] == [1, 2, 3]
    for a, b in zip(ours, theirs, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["val_miou"] == pytest.approx(b["val_miou"], rel=1e-6)


def test_nan_loss_stops_training_with_a_clear_message():
    model = UNet(3, base_channels=4, depth=2)
    loader = [(torch.randn(2, 3, 16, 16), torch.zeros(2, 16, 16, dtype=torch.long))] * 3
    nan_loss = lambda logits, target: logits.sum() * float("nan")  # noqa: E731
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(FloatingPointError, match=r"the training loss became nan at batch 1"):
        train_one_epoch(model, loader, nan_loss, opt, None, torch.device("cpu"))


def test_max_batches_loads_exactly_that_many_batches():
    # A DataLoader that counts what it is asked for: stopping after max_batches must not read one more
    # batch (with workers, a wasted batch of decoding and augmentation each epoch).
    class Counting(torch.utils.data.Dataset):
        def __init__(self):
            self.fetched = 0

        def __len__(self):
            return 10

        def __getitem__(self, i):
            self.fetched += 1
            return torch.zeros(3, 16, 16), torch.zeros(16, 16, dtype=torch.long)

    frames = Counting()
    loader = torch.utils.data.DataLoader(frames, batch_size=2)
    model = UNet(3, base_channels=4, depth=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    loss = train_one_epoch(model, loader, FocalLoss(), opt, None, torch.device("cpu"), max_batches=2)
    assert math.isfinite(loss)
    assert frames.fetched == 4  # 2 batches of 2, not 3 batches


def _first_step_weights(monkeypatch, cfg) -> dict:
    """Run ``fit(cfg)`` up to its first training step and return the model's weights at that moment."""
    import camvid_utils.training as training

    class Stop(Exception):
        pass

    seen = {}

    def record(model, *args, **kwargs):
        seen.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        raise Stop

    monkeypatch.setattr(training, "train_one_epoch", record)
    with pytest.raises(Stop):
        fit(cfg, log=lambda *_: None)
    return seen


def test_init_from_starts_training_from_the_checkpoint_weights(trained, tmp_path, monkeypatch):
    out, _ = trained
    saved = load_checkpoint(out / "best.pt")["model"]
    cfg = tiny(tmp_path / "ft", class_set="camvid11", seed=3)
    fine = _first_step_weights(monkeypatch, replace(cfg, init_from=str(out / "best.pt")))
    scratch = _first_step_weights(monkeypatch, cfg)
    for key, value in saved.items():
        torch.testing.assert_close(fine[key], value.to(fine[key].dtype))
    assert not torch.equal(scratch["inc.0.weight"], fine["inc.0.weight"])


def test_init_from_a_different_architecture_is_a_clear_error(trained, tmp_path):
    out, _ = trained
    cfg = tiny(tmp_path / "ft", class_set="camvid11", base_channels=8, init_from=str(out / "best.pt"))
    with pytest.raises(CheckpointError, match=r"base_channels=4 \(config: 8\).*--base-channels"):
        fit(cfg, log=lambda *_: None)


# ---- issue 12: resume, divergence and output folders -------------------------------------------


def quiet(*_):
    pass


def test_a_one_cycle_on_a_split_smaller_than_a_batch_runs_every_epoch(tmp_path):
    # The sample's 5 training frames make one short batch of 8: the schedule must count that batch.
    cfg = tiny(tmp_path / "run", batch_size=8, schedule="onecycle", optimizer="adamw", lr=1e-3, epochs=3)
    history = fit(cfg, log=quiet)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert all(0 < h["lr"] <= 1e-3 for h in history)


@pytest.mark.parametrize("max_train_batches", [None, 1])
def test_the_schedule_has_exactly_the_steps_the_loop_takes(tmp_path, max_train_batches):
    import camvid_utils.training as training

    cfg = tiny(tmp_path / "run", schedule="onecycle", max_train_batches=max_train_batches)
    run = training.build_run(cfg, log=quiet)
    taken = cfg.epochs * (
        1 if max_train_batches else len(training.train_loader(run.train_set, cfg, run.device, 0))
    )
    assert run.scheduler.total_steps == taken


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    """A finished 2-epoch poly run and a finished 2-epoch one-cycle run."""
    root = tmp_path_factory.mktemp("resume")
    for schedule in ("poly", "onecycle"):
        fit(tiny(root / schedule, schedule=schedule), log=quiet)
    return root


def _copy_run(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_resume_with_more_epochs_continues_a_poly_schedule_over_the_new_total(two_epochs, tmp_path):
    out = _copy_run(two_epochs / "poly", tmp_path / "poly")
    history = fit(tiny(out, schedule="poly", epochs=4), resume=True, log=quiet)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    steps = 2  # 5 frames in batches of 2, the short one dropped
    total = 4 * steps
    lr = TrainConfig().lr
    assert history[-1]["lr"] == pytest.approx(lr * (1 - min(4 * steps, total - 1) / total) ** 0.9)
    assert history[2]["lr"] == pytest.approx(lr * (1 - 3 * steps / total) ** 0.9)


def test_resume_with_other_epochs_refuses_a_one_cycle_and_names_init_from(two_epochs, tmp_path):
    out = _copy_run(two_epochs / "onecycle", tmp_path / "onecycle")
    with pytest.raises(ValueError, match=r"one-cycle.*--init-from") as err:
        fit(tiny(out, schedule="onecycle", epochs=3), resume=True, log=quiet)
    assert "Tried to step" not in str(err.value)
    assert load_checkpoint(out / "last.pt")["epoch"] == 1  # nothing was touched


@pytest.mark.parametrize(
    "change, flag", [({"lr": 1e-4}, "--lr"), ({"batch_size": 4}, "--batch-size"), ({"amp": "fp16"}, "--amp")]
)
def test_resume_refuses_a_setting_it_would_ignore(two_epochs, tmp_path, change, flag):
    out = _copy_run(two_epochs / "poly", tmp_path / "poly")
    with pytest.raises(ValueError, match=rf"{flag}.*--init-from"):
        fit(tiny(out, schedule="poly", **change), resume=True, log=quiet)


def test_resume_may_change_workers_device_data_and_evaluation(two_epochs, tmp_path):
    out = _copy_run(two_epochs / "poly", tmp_path / "poly")
    cfg = tiny(out, schedule="poly", epochs=3, device="cpu", eval_every=2, max_eval_images=1)
    assert [h["epoch"] for h in fit(cfg, resume=True, log=quiet)] == [1, 2, 3]


def test_an_exported_checkpoint_cannot_be_resumed_and_says_so(two_epochs, tmp_path):
    out = tmp_path / "slim"
    out.mkdir()
    ckpt_mod.export_for_inference(two_epochs / "poly/last.pt", out / "last.pt")
    with pytest.raises(CheckpointError, match=r"no optimiser state.*--init-from"):
        fit(tiny(out, schedule="poly", epochs=3), resume=True, log=quiet)


def _diverge_in_epoch_2(monkeypatch, how: str):
    """Make epoch 2 of a fit diverge: its training loss, its validation loss or its weights."""
    import camvid_utils.training as training

    real_train, real_evaluate, calls = training.train_one_epoch, training.evaluate, []

    def train(model, *args, **kwargs):
        calls.append(1)
        loss = real_train(model, *args, **kwargs)
        if len(calls) == 2 and how == "train loss":
            raise FloatingPointError("training loss became nan at batch 1")
        if len(calls) == 2 and how == "weights":
            with torch.no_grad():
                next(model.parameters())[0] = float("inf")
        return loss

    def evaluate_(*args, **kwargs):
        result = real_evaluate(*args, **kwargs)
        return replace(result, loss_sum=float("nan")) if len(calls) == 2 and how == "val loss" else result

    monkeypatch.setattr(training, "train_one_epoch", train)
    monkeypatch.setattr(training, "evaluate", evaluate_)


@pytest.mark.parametrize("how", ["train loss", "val loss", "weights"])
def test_divergence_stops_the_run_and_is_never_best(tmp_path, monkeypatch, how):
    from camvid_utils.training import TrainingDiverged

    _diverge_in_epoch_2(monkeypatch, how)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=rf"epoch 2.*{how.split()[0]}") as err:
        fit(tiny(out, epochs=3), log=quiet)
    assert err.value.epoch == 2 and err.value.best == out / "best.pt"
    assert load_checkpoint(out / "best.pt")["epoch"] == 0 == load_checkpoint(out / "last.pt")["epoch"]
    assert [h["epoch"] for h in json.loads((out / "history.json").read_text())] == [1]


@pytest.mark.slow
def test_a_real_divergence_from_a_huge_learning_rate_is_caught(tmp_path):
    from camvid_utils.training import TrainingDiverged

    with pytest.raises(TrainingDiverged):
        fit(tiny(tmp_path / "run", lr=1e6, epochs=3), log=quiet)
    assert not (tmp_path / "run" / "best.pt").exists() or all(
        math.isfinite(v.float().sum())
        for v in load_checkpoint(tmp_path / "run" / "best.pt")["model"].values()
    )


def test_a_folder_holding_a_run_is_refused_without_overwrite(trained, tmp_path):
    out, _ = trained
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(ValueError, match=r"--resume.*--overwrite"):
        fit(tiny(out, class_set="camvid11", alpha="inverse_sqrt"), log=quiet)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    fresh = _copy_run(out, tmp_path / "copy")
    history = fit(tiny(fresh, epochs=1), overwrite=True, log=quiet)
    assert json.loads((fresh / "history.json").read_text()) == history
    assert load_checkpoint(fresh / "best.pt")["epoch"] == 0 and len(history) == 1


def test_an_unwritable_out_is_refused_before_the_first_epoch(tmp_path, monkeypatch):
    import camvid_utils.training as training

    monkeypatch.setattr(training, "train_one_epoch", lambda *a, **k: pytest.fail("trained first"))
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OSError, match=r"cannot write to .*file/run"):
        fit(tiny(tmp_path / "file" / "run"), log=quiet)
