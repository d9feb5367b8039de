"""The command line on a folder of your own: check-data's verdicts, then train, evaluate and predict end to
end at tiny sizes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from own_folders import BAD, FRAMES, ROAD, bad_case, road_folder, tiny_ids
from PIL import Image

from camvid_utils.check import check_data
from camvid_utils.checkpoint import load_checkpoint, load_model
from camvid_utils.cli import main
from camvid_utils.data import CamVid
from camvid_utils.widgets import frame_browser, prediction_viewer
from conftest import SAMPLE, TINY_FLAGS, write_png

TABLE = "value,name,r,g,b\n0,background,0,0,0\n1,road,200,0,0\n255,void\n"
RED = (200, 0, 0)


def val_masks() -> list[np.ndarray]:
    """Two hand-made val masks: 0 background, 1 road, 255 void."""
    a = np.zeros((12, 16), np.uint8)
    a[6:, :] = 1  # 96 road
    a[0, :4] = 255  # 4 void
    b = np.zeros((12, 16), np.uint8)
    b[:, :3] = 1  # 36 road
    return [a, b]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A two-class folder split by sub-folders: 4 train and 2 val frames of 16x12."""
    root = tmp_path_factory.mktemp("own")
    (root / "classes.csv").write_text(TABLE)
    rng = np.random.default_rng(0)
    train = [np.roll(val_masks()[0], k, axis=0) for k in range(4)]
    for split, masks in (("train", train), ("val", val_masks())):
        for i, mask in enumerate(masks):
            write_png(
                root / "images" / split / f"{split}{i}.png", rng.integers(0, 256, (12, 16, 3), np.uint8)
            )
            write_png(root / "masks" / split / f"{split}{i}.png", mask)
    return root


@pytest.fixture(scope="module")
def run(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--data", str(folder), "--out", str(out), "--epochs", "1", *TINY_FLAGS]) == 0
    return out


def test_the_checkpoint_carries_the_folder_s_classes_and_colours(run):
    ckpt = load_checkpoint(run / "best.pt")
    assert ckpt["classes"] == ["background", "road"] and ckpt["colors"] == [[0, 0, 0], list(RED)]
    loaded = load_model(run / "best.pt")
    assert loaded.classes == ("background", "road") and loaded.colors == ((0, 0, 0), RED)


def constant_checkpoint(run, path, class_id: int):
    """The trained checkpoint with its head changed to predict ``class_id`` everywhere."""
    ckpt = load_checkpoint(run / "best.pt")
    ckpt["model"]["head.weight"].zero_()
    ckpt["model"]["head.bias"].copy_(torch.tensor([10.0, -10.0] if class_id == 0 else [-10.0, 10.0]))
    torch.save(ckpt, path)
    return path


def test_evaluate_miou_equals_a_hand_computation(run, folder, tmp_path, capsys):
    road = constant_checkpoint(run, tmp_path / "road.pt", 1)
    scores = tmp_path / "scores.json"
    assert (
        main(
            [
                "evaluate",
                "--data",
                str(folder),
                "--checkpoint",
                str(road),
                "--split",
                "val",
                "--json",
                str(scores),
            ]
        )
        == 0
    )
    got = json.loads(scores.read_text())
    # by hand: 96 + 36 road pixels of 188 + 192 valid ones (4 void left out); background never predicted
    road_iou = (96 + 36) / (188 + 192)
    assert got["per_class_iou"] == pytest.approx({"background": 0.0, "road": road_iou})
    assert got["miou"] == pytest.approx(road_iou / 2) and got["pixel_accuracy"] == pytest.approx(road_iou)
    assert "background" in capsys.readouterr().out


def test_predict_draws_the_folder_s_classes_in_its_colours(run, folder, tmp_path, capsys):
    road = constant_checkpoint(run, tmp_path / "road.pt", 1)
    out = tmp_path / "pred"
    assert (
        main(
            ["predict", "--checkpoint", str(road), "--data", str(folder), "--split", "val", "--out", str(out)]
        )
        == 0
    )
    written = sorted(p.name for p in out.iterdir())
    assert written == ["val0_mask.png", "val0_overlay.png", "val1_mask.png", "val1_overlay.png"]
    mask = np.asarray(Image.open(out / "val0_mask.png").convert("RGB"))
    assert (mask == RED).all()
    assert "road 100%" in capsys.readouterr().out


def test_predict_needs_inputs_or_data(run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--checkpoint", str(run / "best.pt"), "--out", "x"])
    assert exit_info.value.code == 2 and "or --data DIR" in capsys.readouterr().err


def test_the_viewers_draw_the_folder_s_classes(run, folder):
    val = CamVid(folder, "val")
    label = frame_browser(val).update()  # (H, W, 3): frame 0's mask in the table's colours
    assert (label[6:] == RED).all() and (label[1:6] == (0, 0, 0)).all()
    viewer = prediction_viewer(load_model(run / "best.pt"), val)
    assert [name for name, _ in viewer.children[0].children[0].children[-1].options][1:] == [
        "background",
        "road",
    ]


def test_a_camvid_class_set_is_refused_on_an_own_folder(folder, tmp_path, capsys):
    argv = ["train", "--data", str(folder), "--out", str(tmp_path / "r"), "--class-set", "camvid11"]
    assert main([*argv, "--epochs", "1", *TINY_FLAGS]) == 2
    err = capsys.readouterr().err
    assert "dataset folder of your own" in err and "without --class-set" in err


# --- check-data ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BAD))
def test_check_data_exits_1_on_each_bad_mask(name, tmp_path, capsys):
    root = bad_case(name, tmp_path / "bad")
    assert main(["check-data", str(root)]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM" in out and BAD[name][0] in out and out.rstrip().endswith("fix them before training")


def test_check_data_exits_0_on_a_clean_folder_and_reports_it(tmp_path, capsys):
    root = road_folder(tmp_path / "road")
    assert main(["check-data", str(root)]) == 0
    out = capsys.readouterr().out
    assert "train: 5 image/mask pairs" in out and "val: 3 image/mask pairs" in out
    assert "mask format: binary 0/255" in out and "void 0.0%" in out
    assert "suggested class weights" in out and out.rstrip().endswith("OK: ready to train")
    report = check_data(root)
    counts = report.counts["train"]
    expected = sum((ids == ROAD).sum() for _, _, ids in FRAMES["train"])
    assert counts[1] == expected and counts[0] + counts[1] == sum(ids.size for _, _, ids in FRAMES["train"])


def test_unused_masks_are_a_warning_and_a_camvid_folder_is_not_an_own_folder(tmp_path, capsys):
    root = bad_case("none", tmp_path / "extra")
    Image.fromarray(tiny_ids()).save(root / "masks" / "val" / "orphan.png")
    report = check_data(root)
    assert report.ok and any("orphan.png" in w and "not used" in w for w in report.warnings)
    assert main(["check-data", str(SAMPLE)]) == 1
    assert "not a dataset folder of your own" in capsys.readouterr().out


def test_the_shipped_model_scores_a_folder_labelled_in_its_own_11_classes(tmp_path, capsys):
    from own_folders import camvid_folder, road_folder

    from camvid_utils.cli import main
    from camvid_utils.locations import shipped_checkpoint

    root = camvid_folder(tmp_path / "c11", "palette")
    argv = ["evaluate", "--data", str(root), "--split", "val", "--checkpoint", str(shipped_checkpoint())]
    assert main(argv) == 0
    assert "mIoU" in capsys.readouterr().out
    road = road_folder(
        tmp_path / "road"
    )  # two classes of its own: refused, naming them, not --class-set advice
    assert main([*argv[:2], str(road), *argv[3:]]) == 2
    err = capsys.readouterr().err
    assert "background, road" in err and "cannot score it" in err
