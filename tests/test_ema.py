"""The EMA of the weights: its arithmetic against a hand computation, that training is unchanged by
it, that validation and ``load_model`` use it, and that a killed run with EMA resumes bit-identical."""

from dataclasses import replace

import pytest
import torch

from camvid_utils.checkpoint import export_for_inference, load_checkpoint, load_model
from camvid_utils.cli import main
from camvid_utils.data import CamVid
from camvid_utils.ema import ModelEMA
from camvid_utils.evaluation import collate_eval, evaluate
from camvid_utils.losses import FocalLoss
from camvid_utils.model import UNet
from camvid_utils.training import fit
from camvid_utils.transforms import EvalPreset
from conftest import SAMPLE, TINY_FLAGS, tiny

quiet = lambda *_: None  # noqa: E731


def test_ema_weights_equal_a_hand_computed_average_over_a_few_steps():
    torch.manual_seed(0)
    model = UNet(5, 3, 4, 2)
    ema = ModelEMA(model, decay=0.8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    by_hand = {k: v.double().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    for step in range(6):
        x, y = torch.randn(2, 3, 16, 16), torch.randint(0, 5, (2, 16, 16))
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ema.update(model)
        d = min(0.8, (1 + step) / (10 + step))  # warm-up: 0.1, 0.18, 0.25, ... then 0.8
        for name, value in model.state_dict().items():
            if name in by_hand:
                by_hand[name] = d * by_hand[name] + (1 - d) * value.double()
    averaged = ema.module.state_dict()
    for name, expected in by_hand.items():
        torch.testing.assert_close(averaged[name].double(), expected, rtol=1e-5, atol=1e-6, msg=name)
    counters = [k for k in averaged if k.endswith("num_batches_tracked")]
    assert counters and all(int(averaged[k]) == int(model.state_dict()[k]) == 6 for k in counters)
    moved = averaged["head.weight"] - model.state_dict()["head.weight"]
    assert moved.abs().max() > 1e-4  # the average lags the weights: it is not a copy


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, 1.5])
def test_a_decay_outside_zero_to_one_is_refused(decay):
    with pytest.raises(ValueError, match="between 0 and 1"):
        ModelEMA(UNet(5, 3, 4, 2), decay)


@pytest.fixture(scope="module")
def with_ema(tmp_path_factory):
    out = tmp_path_factory.mktemp("ema")
    cfg = tiny(out / "ema", class_set="camvid11", schedule="onecycle", optimizer="adamw", lr=1e-2, ema=0.9)
    return cfg, fit(cfg, log=quiet)


def test_ema_changes_no_training_step(with_ema, tmp_path):
    cfg, history = with_ema
    plain = fit(replace(cfg, ema=None, out=str(tmp_path / "plain")), log=quiet)
    assert [h["train_loss"] for h in plain] == [h["train_loss"] for h in history]
    ours, theirs = load_checkpoint(f"{cfg.out}/last.pt"), load_checkpoint(tmp_path / "plain" / "last.pt")
    assert theirs["ema"] is None and ours["ema"]["decay"] == 0.9
    assert all(torch.equal(ours["model"][k], v) for k, v in theirs["model"].items())


def test_validation_and_load_model_score_the_ema_weights(with_ema):
    cfg, history = with_ema
    ckpt = load_checkpoint(f"{cfg.out}/last.pt")
    assert ckpt["ema"]["updates"] == ckpt["scheduler"]["last_epoch"] > 0  # one update per step
    loaded = load_model(f"{cfg.out}/last.pt")
    for name, value in ckpt["ema"]["model"].items():
        assert torch.equal(loaded.model.state_dict()[name], value.float()), name
    assert not torch.equal(ckpt["ema"]["model"]["head.weight"], ckpt["model"]["head.weight"])
    val = CamVid(cfg.data, "val", class_set="camvid11", transform=EvalPreset(cfg.image_size))
    frames = torch.utils.data.Subset(val, range(cfg.max_eval_images))
    loader = torch.utils.data.DataLoader(frames, batch_size=cfg.batch_size, collate_fn=collate_eval)
    loss_fn = FocalLoss(gamma=cfg.gamma)
    result = evaluate(loaded.model, loader, torch.device("cpu"), 11, loss_fn=loss_fn)
    assert result.loss == pytest.approx(history[-1]["val_loss"], rel=1e-4)  # summation order
    assert result.confusion.miou() == pytest.approx(history[-1]["val_miou"], abs=1e-9)


def test_an_exported_checkpoint_keeps_the_ema_weights(with_ema, tmp_path):
    cfg, _ = with_ema
    export_for_inference(f"{cfg.out}/last.pt", tmp_path / "slim.pt")
    slim, full = load_model(tmp_path / "slim.pt"), load_model(f"{cfg.out}/last.pt")
    torch.testing.assert_close(slim.model.head.weight, full.model.head.weight, rtol=1e-3, atol=1e-3)


def test_a_killed_run_with_ema_resumes_bit_identical(with_ema, tmp_path):
    cfg, straight = with_ema
    part = replace(cfg, out=str(tmp_path / "part"))

    def killed_after_first_epoch(line):
        if line.startswith("epoch 1/"):
            raise KeyboardInterrupt  # as if killed right after the epoch's checkpoint

    with pytest.raises(KeyboardInterrupt):
        fit(part, log=killed_after_first_epoch)
    assert load_checkpoint(tmp_path / "part" / "last.pt")["epoch"] == 0
    resumed = fit(part, resume=True, log=quiet)
    strip = lambda history: [{k: v for k, v in h.items() if k != "seconds"} for h in history]  # noqa: E731
    assert strip(resumed) == strip(straight)
    ours, theirs = load_checkpoint(tmp_path / "part" / "last.pt"), load_checkpoint(f"{cfg.out}/last.pt")
    assert ours["ema"]["updates"] == theirs["ema"]["updates"]
    for name, value in theirs["model"].items():
        assert torch.equal(ours["model"][name], value), name
    for name, value in theirs["ema"]["model"].items():
        assert torch.equal(ours["ema"]["model"][name], value), name


def test_the_train_command_takes_ema_and_refuses_a_bad_decay(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data", str(SAMPLE), "--out", str(out), "--epochs", "1", *TINY_FLAGS]
    assert main([*args, "--ema", "0.99"]) in (0, None)
    assert load_checkpoint(out / "last.pt")["ema"]["decay"] == 0.99
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--ema", "1.5", "--overwrite"])
    assert exit_info.value.code == 2
    assert "--ema: must lie between 0 and 1" in capsys.readouterr().err
