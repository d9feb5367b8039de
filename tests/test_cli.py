"""The command line: every input gets a result or one clear line, and its advice works as written."""

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import camvid_utils.cli as cli
import camvid_utils.training as training
from camvid_utils.checkpoint import CheckpointError, load_checkpoint, load_model
from camvid_utils.cli import main
from camvid_utils.config import TrainConfig
from camvid_utils.locations import shipped_checkpoint
from camvid_utils.training import fit
from conftest import SAMPLE, TINY_FLAGS, tiny


def quiet(*_):
    pass


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-epoch run on the sample's 11 classes, 48x64 inputs, a 2-level U-Net."""
    out = tmp_path_factory.mktemp("run")
    cfg = tiny(out, class_set="camvid11", scale=(1.0, 1.0), hflip=0.0, jitter=0.0)
    return out, fit(cfg, log=quiet)


def test_cli_evaluate_prints_a_table_and_writes_json(trained, tmp_path, capsys):
    out, _ = trained
    code = main(
        [
            "evaluate",
            "--data",
            str(SAMPLE),
            "--checkpoint",
            str(out / "best.pt"),
            "--split",
            "val",
            "--json",
            str(tmp_path / "scores.json"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "Pedestrian" in printed and "mIoU" in printed and "class accuracy" in printed
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert set(scores) == {"miou", "pixel_accuracy", "class_accuracy", "per_class_iou", "num_images", "tta"}
    assert scores["tta"] == "none" and "TTA: none" in printed
    assert scores["num_images"] == 3 and list(scores["per_class_iou"])[:2] == ["Sky", "Building"]
    assert all(0 <= scores[k] <= 1 for k in ("miou", "pixel_accuracy", "class_accuracy"))
    defined = [v for v in scores["per_class_iou"].values() if v is not None]
    assert scores["miou"] == pytest.approx(sum(defined) / len(defined))


def test_cli_predict_writes_masks_and_overlays(trained, tmp_path, capsys):
    out, _ = trained
    code = main(
        ["predict", "--checkpoint", str(out / "best.pt"), str(SAMPLE / "test"), "--out", str(tmp_path)]
    )
    assert code == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 6 and names[0] == "0006R0_f03450_mask.png"
    mask = np.asarray(Image.open(tmp_path / names[0]))
    assert mask.shape == (720, 960, 3)
    palette = {tuple(c) for c in load_model(out / "best.pt").colors}
    assert {tuple(c) for c in np.unique(mask.reshape(-1, 3), axis=0)} <= palette
    assert capsys.readouterr().out.count("_mask.png") == 3


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["evaluate", "--data", "/nonexistent", "--checkpoint", "{ckpt}"],
            "dataset folder /nonexistent does not exist",
        ),
        (
            ["evaluate", "--data", str(SAMPLE), "--checkpoint", "/nope.pt"],
            "checkpoint /nope.pt does not exist",
        ),
        (
            ["predict", "--checkpoint", "{ckpt}", "/no/such.png", "--out", "{tmp}"],
            "/no/such.png does not exist",
        ),
        (["train", "--data", "{tmp}/empty", "--epochs", "1"], "does not exist"),
        (["train", "--data", str(SAMPLE), "--out", "{tmp}/fresh", "--resume"], "last.pt does not exist"),
    ],
)
def test_cli_errors_are_one_clear_line(trained, tmp_path, capsys, argv, message):
    out, _ = trained
    argv = [a.format(ckpt=out / "best.pt", tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_cli_refuses_a_checkpoint_whose_classes_do_not_match(trained, capsys):
    out, _ = trained  # trained on camvid11; evaluating on 32-class labels must not silently mis-score
    code = main(["evaluate", "--data", str(SAMPLE), "--checkpoint", str(out / "best.pt"), "--split", "val"])
    assert code == 0  # the checkpoint's own class set is used to read the data...
    capsys.readouterr()
    ckpt = load_checkpoint(out / "best.pt")
    ckpt["class_set"] = "camvid32"
    torch.save(ckpt, out / "mismatch.pt")
    assert main(["evaluate", "--data", str(SAMPLE), "--checkpoint", str(out / "mismatch.pt")]) == 2
    err = capsys.readouterr().err  # ...and a mismatch is an error that names what differs
    # the checkpoint holds the 11 classes; read as camvid32, the sample has 31 (and void)
    assert "error: the checkpoint was trained on 11 classes but" in err
    assert "has 31 (only the checkpoint" in err
    assert "; only the data has Animal" in err
    assert "checkpoint the checkpoint" not in err
    assert "--class-set" not in err and err.count("\n") == 1  # evaluate has no --class-set


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--data", "x", "--lr", "-1"],
        ["train", "--data", "x", "--epochs", "0"],
        ["evaluate", "--data", "x"],
        ["predict", "--checkpoint", "c"],
    ],
)
def test_cli_rejects_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and "error:" in capsys.readouterr().err


def test_cli_train_fills_the_config_from_its_options(monkeypatch, capsys):
    import camvid_utils.cli as cli

    seen = []
    monkeypatch.setattr(cli, "fit", lambda cfg, **kwargs: seen.append(cfg) or [])
    argv = ["train", "--data", "d", "--preset", "cpu-fast", "--init-from", "w.pt", "--lr", "0.001"]
    assert main([*argv, "--class-weights", "median_frequency"]) == 0
    assert main([*argv, "--class-weights", "none"]) == 0
    assert main(argv) == 0
    assert [c.alpha for c in seen] == ["median_frequency", None, "inverse_sqrt"]
    assert {(c.init_from, c.lr, c.base_channels) for c in seen} == {("w.pt", 0.001, 24)}


# ---- issue 12 -----------------------------------------------------------------------------------


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    err = err[err.find("error: ") :]  # after any progress bars
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
@pytest.mark.parametrize("device", ["foo", "cuda:x", "gpu"])
def test_every_device_value_is_checked_by_the_parser(command, device, capsys):
    argv = {
        "train": ["train", "--data", "d"],
        "evaluate": ["evaluate", "--data", "d", "--checkpoint", "c"],
        "predict": ["predict", "--checkpoint", "c", "x.png", "--out", "o"],
    }[command]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--device", device])
    assert exit_info.value.code == 2 and "expected cpu, cuda, cuda:N or mps" in capsys.readouterr().err


@pytest.mark.parametrize(
    "device, message", [("cuda", "CUDA is not available"), ("mps", "MPS is not available")]
)
def test_a_device_this_machine_lacks_is_one_clear_line(
    trained, tmp_path, capsys, monkeypatch, device, message
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    out, _ = trained
    evaluate = ["evaluate", "--data", str(SAMPLE), "--checkpoint", str(out / "best.pt"), "--device", device]
    train = ["train", "--data", str(SAMPLE), *TINY_FLAGS, "--out", str(tmp_path / "t"), "--device", device]
    for argv in (evaluate, train):
        assert main(argv) == 2
        assert message in _one_line_error(capsys)
    assert not (tmp_path / "t").exists()


def test_cuda_index_beyond_the_cards_is_one_clear_line(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert main(["evaluate", "--data", "d", "--checkpoint", "c", "--device", "cuda:3"]) == 2
    assert "has 1 CUDA device(s)" in _one_line_error(capsys)


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_evaluate_and_predict_pick_cuda_when_there_is_one(command, monkeypatch, tmp_path):
    seen = []

    def load_model_(path, device=None):
        seen.append(torch.device(device or "cpu"))
        raise CheckpointError("stop here")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(cli, "load_model", load_model_)
    frame = tmp_path / "f.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(frame)
    argv = {
        "evaluate": ["evaluate", "--data", str(SAMPLE), "--checkpoint", "c.pt"],
        "predict": ["predict", "--checkpoint", "c.pt", str(frame), "--out", str(tmp_path / "o")],
    }[command]
    assert main(argv) == 2
    assert seen == [torch.device("cuda")]


@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "0"])
def test_lr_must_be_positive_and_finite(value, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--data", "d", f"--lr={value}"])
    assert "positive finite number" in capsys.readouterr().err


def test_workers_must_be_zero_or_more_in_the_flag_s_own_words(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--data", "d", "--workers", "-1"])
    err = capsys.readouterr().err
    assert "argument --workers: must be 0 or more, got -1" in err and "num_workers" not in err


@pytest.mark.parametrize("crop", [["1000", "1000"], ["64", "129"]])
def test_a_crop_larger_than_the_frame_is_refused_before_training(crop, tmp_path, capsys):
    # Crops are cut from frames resized to --image-size; a larger crop would be mostly void padding.
    argv = ["train", "--data", str(SAMPLE), "--image-size", "128", "128", "--crop-size", *crop]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = _one_line_error(capsys)
    assert f"--crop-size {crop[0]} {crop[1]} is larger than --image-size 128 128" in err
    assert not (tmp_path / "run").exists()


def test_an_unwritable_json_is_refused_before_the_split_is_scored(tmp_path, capsys, monkeypatch):
    import camvid_utils.cli as cli

    monkeypatch.setattr(cli, "evaluate_checkpoint", lambda *a, **k: pytest.fail("scored before the check"))
    argv = ["evaluate", "--data", str(SAMPLE), "--checkpoint", str(shipped_checkpoint()), "--json"]
    assert main([*argv, str(tmp_path)]) == 2  # a folder
    err = _one_line_error(capsys)
    assert f"--json {tmp_path}" in err and "is a folder" in err
    (tmp_path / "file").write_text("")
    assert main([*argv, str(tmp_path / "file" / "scores.json")]) == 2  # under a file
    assert "--json" in _one_line_error(capsys)


def test_a_folder_given_as_checkpoint_names_the_checkpoint_inside_it(trained, capsys):
    run, _ = trained
    assert main(["evaluate", "--data", str(SAMPLE), "--checkpoint", str(run)]) == 2
    err = _one_line_error(capsys)
    assert "is a folder" in err and str(run / "best.pt") in err and "does not exist" not in err


def test_a_file_given_as_out_is_refused_as_not_a_folder(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("keep me")
    notes = tmp_path / "notes.txt"
    argv = ["train", "--data", str(SAMPLE), *TINY_FLAGS, "--epochs", "1", "--out", str(notes)]
    assert main(argv) == 2
    assert "is a file, not a folder" in _one_line_error(capsys)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_resume_in_a_folder_without_a_run_says_to_start_one(tmp_path, capsys):
    argv = ["train", "--data", str(SAMPLE), *TINY_FLAGS, "--out", str(tmp_path), "--resume"]
    assert main(argv) == 2
    err = _one_line_error(capsys)
    assert f"{tmp_path} holds no run to resume (no last.pt); start one without --resume" in err


def test_a_text_file_as_checkpoint_is_one_line_without_unsafe_advice(tmp_path, capsys):
    (tmp_path / "notes.pt").write_text("epoch 1: loss 0.5\n")
    assert main(["evaluate", "--data", str(SAMPLE), "--checkpoint", str(tmp_path / "notes.pt")]) == 2
    err = _one_line_error(capsys)
    assert "is not a PyTorch checkpoint" in err and "weights_only" not in err


def test_a_class_mismatch_on_evaluate_names_the_classes_and_advises_what_evaluate_has(trained, capsys):
    out, _ = trained
    ckpt = load_checkpoint(out / "best.pt")
    ckpt["classes"] = [*ckpt["classes"][:10], "Rider"]
    torch.save(ckpt, out / "renamed.pt")
    assert main(["evaluate", "--data", str(SAMPLE), "--checkpoint", str(out / "renamed.pt")]) == 2
    err = _one_line_error(capsys)
    assert "only the checkpoint has Rider" in err and "only the data has Bicyclist" in err
    assert "--class-set" not in err


# predict: one output per input, every mode, unreadable files reported


def _frame(path, array=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((6, 8, 3), np.uint8) if array is None else array).save(path)
    return path


def test_predict_writes_one_output_per_input(trained, tmp_path, capsys):
    out, _ = trained
    _frame(tmp_path / "in" / "a" / "x.jpg")
    _frame(tmp_path / "in" / "b" / "x.png")
    pred = tmp_path / "pred"
    argv = ["predict", "--checkpoint", str(out / "best.pt"), str(tmp_path / "in/a"), str(tmp_path / "in/b")]
    assert main([*argv, "--out", str(pred)]) == 0
    written = sorted(str(p.relative_to(pred)) for p in pred.rglob("*.png"))
    assert written == ["a/x_mask.png", "a/x_overlay.png", "b/x_mask.png", "b/x_overlay.png"]


def test_predict_skips_unreadable_images_writes_the_others_and_exits_1(trained, tmp_path, capsys):
    out, _ = trained
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # sorts first
    _frame(tmp_path / "in" / "b.png")
    _frame(tmp_path / "in" / "c.jpg")
    pred = tmp_path / "pred"
    assert (
        main(["predict", "--checkpoint", str(out / "best.pt"), str(tmp_path / "in"), "--out", str(pred)]) == 1
    )
    assert sorted(p.name for p in pred.iterdir()) == [
        "b_mask.png",
        "b_overlay.png",
        "c_mask.png",
        "c_overlay.png",
    ]
    err = capsys.readouterr().err
    assert "skipped" in err and "a_broken.png" in err
    assert "error: 1 of 3 images could not be read" in err and "the other 2 were written" in err


def test_predict_reads_a_16_bit_frame_as_its_8_bit_values(tmp_path, monkeypatch):
    grey = np.arange(48, dtype=np.uint16).reshape(6, 8) * 1300  # 0..61100
    Image.fromarray(grey).save(tmp_path / "deep.png")
    seen = []

    class Loaded:
        colors, classes = ((0, 0, 0), (9, 9, 9)), ("a", "b")

    monkeypatch.setattr(cli, "load_model", lambda path, device=None: Loaded())
    monkeypatch.setattr(
        cli,
        "predict",
        lambda loaded, image, tta=None: seen.append(image) or torch.zeros(6, 8, dtype=torch.long),
    )
    assert (
        main(["predict", "--checkpoint", "c", str(tmp_path / "deep.png"), "--out", str(tmp_path / "o")]) == 0
    )
    (image,) = seen
    assert image.dtype == torch.uint8 and image.shape == (3, 6, 8)
    torch.testing.assert_close(image[0], torch.from_numpy((grey >> 8).astype(np.uint8)))
    assert len(image.unique()) > 40  # not all one value (white), as a plain convert("RGB") gives


# train: output folders, resume rules, divergence advice


def test_train_refuses_a_folder_holding_a_run_and_resume_with_overwrite(trained, capsys):
    out, _ = trained
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["train", "--data", str(SAMPLE), *TINY_FLAGS, "--out", str(out)]) == 2
    err = _one_line_error(capsys)
    assert "--resume" in err and "--overwrite" in err
    assert main(["train", "--data", str(SAMPLE), "--out", str(out), "--resume", "--overwrite"]) == 2
    assert "pass one" in _one_line_error(capsys)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_an_unwritable_out_is_refused_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(
        training, "train_one_epoch", lambda *a, **k: pytest.fail("trained before checking --out")
    )
    (tmp_path / "file").write_text("x")
    assert main(["train", "--data", str(SAMPLE), *TINY_FLAGS, "--out", str(tmp_path / "file" / "run")]) == 2
    assert "cannot write to" in _one_line_error(capsys)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """A 1-epoch run made by the command line, with the seed preset on tiny settings."""
    out = tmp_path_factory.mktemp("cli") / "run"
    argv = ["train", "--data", str(SAMPLE), *TINY_FLAGS, "--epochs", "1", "--eval-every", "1"]
    argv += ["--out", str(out)]
    assert main(argv) == 0
    return out, argv


def test_resume_refuses_an_ignored_flag_with_the_init_from_way(cli_run, capsys):
    out, _ = cli_run
    assert main(["train", "--data", str(SAMPLE), "--out", str(out), "--resume", "--lr", "1e-4"]) == 2
    err = _one_line_error(capsys)
    assert re.search(
        r"Drop --lr 0.0001 to continue it, or start a new cycle .*--init-from .*last.pt --lr 0.0001", err
    )
    assert load_checkpoint(out / "last.pt")["epoch"] == 0


@pytest.mark.slow  # one of the slowest tests: out of the short contributor run
def test_resume_without_the_original_flags_continues_the_saved_run(cli_run, tmp_path, capsys):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(cli_run[0], out)
    # the same command with --resume works, and so does the short form with only what may change
    assert main([*cli_run[1][:-2], "--out", str(out), "--epochs", "2", "--resume"]) == 0
    assert (
        main(
            ["train", "--data", str(SAMPLE), "--out", str(out), "--epochs", "3", "--workers", "0", "--resume"]
        )
        == 0
    )
    last = load_checkpoint(out / "last.pt")
    assert last["epoch"] == 2 and last["train_config"]["base_channels"] == 4
    assert [h["epoch"] for h in last["history"]] == [1, 2, 3]


def test_divergence_exits_with_advice_that_runs_as_written(tmp_path, capsys, monkeypatch):
    real, calls = training.train_one_epoch, []

    def diverge_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise FloatingPointError("the training loss became nan at batch 1")
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train_one_epoch", diverge_in_epoch_2)
    out = tmp_path / "run"
    argv = ["train", "--data", str(SAMPLE), *TINY_FLAGS, "--epochs", "2", "--amp", "fp16", "--out", str(out)]
    assert main(argv) == 2
    err = _one_line_error(capsys)
    assert "training diverged in epoch 2" in err and "--amp off" in err and "resuming it would diverge" in err
    command = shlex.split(err.split("Run: ")[1])
    assert command[:4] == ["python", "-m", "camvid_utils", "train"]
    seen = []
    monkeypatch.setattr(cli, "fit", lambda cfg, **kwargs: seen.append((cfg, kwargs)) or [])
    assert main(command[3:]) == 0
    (cfg, kwargs), lr = seen[0], TrainConfig().lr
    assert cfg.init_from == str(out / "best.pt") and cfg.lr == pytest.approx(lr / 10)
    assert (cfg.base_channels, cfg.image_size, cfg.amp) == (4, (48, 64), "fp16") and not kwargs["resume"]
    run = training.build_run(cfg, log=quiet)  # the advised weights fit the advised network
    torch.testing.assert_close(
        run.model.state_dict()["inc.0.weight"], load_checkpoint(out / "best.pt")["model"]["inc.0.weight"]
    )


def test_train_help_says_what_a_resume_may_change(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "It may change only --epochs, --data, --out, --device, --workers, --eval-every" in text
    assert "--init-from OUT/last.pt" in text and "--overwrite" in text and "--amp" in text


# ---- nothing the user owns is overwritten ------------------------------------------------------


def _bytes_of(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_predict_into_its_input_folder_keeps_a_label_named_like_an_output(trained, tmp_path, capsys):
    out, _ = trained
    folder = tmp_path / "photos"
    _frame(folder / "road.png")
    _frame(folder / "road_mask.png", np.full((6, 8, 3), 7, np.uint8))  # the user's own label
    before = _bytes_of(folder)
    argv = ["predict", "--checkpoint", str(out / "best.pt"), str(folder), "--out", str(folder)]
    assert main(argv) == 2
    err = _one_line_error(capsys)
    assert "road_mask.png already exists" in err and "--overwrite" in err
    assert _bytes_of(folder) == before  # nothing written, nothing replaced


def test_a_second_predict_into_the_same_out_is_refused_unless_overwrite(trained, tmp_path, capsys):
    out, _ = trained
    _frame(tmp_path / "in" / "a.png")
    argv = [
        "predict",
        "--checkpoint",
        str(out / "best.pt"),
        str(tmp_path / "in"),
        "--out",
        str(tmp_path / "p"),
    ]
    assert main(argv) == 0
    first = _bytes_of(tmp_path / "p")
    assert main(argv) == 2 and "already exist" in _one_line_error(capsys)
    assert _bytes_of(tmp_path / "p") == first
    assert main([*argv, "--overwrite"]) == 0


@pytest.mark.parametrize(
    "names", [("x.png", "x.PNG"), ("x.jpg", "x.png", "x_jpg.png")], ids=["case", "suffix in a stem"]
)
def test_images_whose_names_collide_get_distinct_outputs(trained, tmp_path, names):
    out, _ = trained
    for i, name in enumerate(names):
        _frame(tmp_path / "in" / name, np.full((6, 8, 3), 40 * i, np.uint8))
    if len({p.name for p in (tmp_path / "in").iterdir()}) < len(names):
        pytest.skip("this file system does not keep names that differ only in case apart")
    pred = tmp_path / "pred"
    assert (
        main(["predict", "--checkpoint", str(out / "best.pt"), str(tmp_path / "in"), "--out", str(pred)]) == 0
    )
    masks = sorted(p.name.lower() for p in pred.glob("*_mask.png"))
    assert len(masks) == len(set(masks)) == len(names), masks


def test_evaluate_json_pointed_at_the_checkpoint_keeps_the_model(trained, capsys):
    out, _ = trained
    checkpoint = out / "best.pt"
    before = checkpoint.read_bytes()
    argv = ["evaluate", "--data", str(SAMPLE), "--split", "val"]
    for extra in ([], ["--overwrite"]):
        code = main([*argv, "--checkpoint", str(checkpoint), "--json", str(checkpoint), *extra])
        assert code == 2
        assert "is one of the inputs" in _one_line_error(capsys)
    assert checkpoint.read_bytes() == before


def test_predict_video_onto_its_own_input_keeps_the_input(trained, tmp_path, capsys):
    out, _ = trained
    frames = [Image.fromarray(np.full((24, 32, 3), 30 * i, np.uint8)) for i in range(5)]
    clip = tmp_path / "clip.gif"
    frames[0].save(clip, save_all=True, append_images=frames[1:], duration=100)
    before = clip.read_bytes()
    link = tmp_path / "link.gif"
    link.symlink_to(clip)
    for target in (clip, link):
        argv = [
            "predict",
            "--checkpoint",
            str(out / "best.pt"),
            str(clip),
            "--video",
            str(target),
            "--overwrite",
        ]
        assert main(argv) == 2
        assert "is one of the inputs" in _one_line_error(capsys)
    assert clip.read_bytes() == before
