"""scripts/ablation.py: every row trains at ``--quick`` size, differs from its parent only in what it
names (read back from each run's saved config), is skipped when finished and resumes when killed."""

import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from camvid_utils import training
from camvid_utils.checkpoint import load_training_checkpoint

REPO = Path(__file__).resolve().parent.parent


def load_script():
    spec = importlib.util.spec_from_file_location("ablation", REPO / "scripts" / "ablation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ablation"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


ablation = load_script()


def quick_base():
    """The base row's config of ``--quick``."""
    return ablation.budget_config(ablation.parse_args(["--quick", "--out", "unused"]))


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """Run ``--quick`` once; return its output folder and what it printed."""
    out = tmp_path_factory.mktemp("ablation")
    torch.set_num_threads(1)
    assert ablation.main(["--quick", "--out", str(out)]) == 0
    return out


def test_every_row_is_in_the_json_with_its_scores(quick):
    saved = json.loads((quick / "ablation.json").read_text())
    rows = saved["rows"]
    assert [r["row"] for r in rows] == [row.name for row in ablation.ROWS]
    for r in rows:
        assert set(r["thin_iou"]) == set(ablation.THIN)
        assert r["epochs"] == 2 and len(r["val_miou_per_epoch"]) == 2
        values = r["val_miou_per_epoch"]
        assert r["noise_last_epochs"]["range"] == pytest.approx(max(values) - min(values))
        assert 0.0 <= r["val_miou"] <= 1.0
    assert saved["budget"]["epochs"] == 2


def test_rows_differ_only_in_the_ingredient_they_name(quick):
    saved = {
        r.name: load_training_checkpoint(quick / r.name / "seed0" / "last.pt")["train_config"]
        for r in ablation.ROWS
    }
    for row in ablation.ROWS[1:]:
        differ = {k for k in saved[row.name] if k != "out" and saved[row.name][k] != saved[row.parent][k]}
        assert differ == set(ablation.row_changes(row, quick_base())), row.name
    # the rows build up: the last row holds every ingredient of the ones it stands on
    width = saved["width2x"]
    assert (width["optimizer"], width["schedule"], width["hflip"], width["alpha"]) == (
        "adamw",
        "onecycle",
        0.5,
        "inverse_sqrt",
    )
    assert width["base_channels"] == 2 * saved["seed"]["base_channels"]


def test_check_rows_catches_a_row_that_changes_more_than_it_names(quick):
    results = json.loads((quick / "ablation.json").read_text())["rows"]
    base = quick_base()
    assert ablation.check_rows(results, base) == []
    lying = replace(ablation.BY_NAME["gamma0"], changes={"gamma": 0.0, "lr": 1.0})
    original = ablation.BY_NAME["gamma0"]
    ablation.BY_NAME["gamma0"] = lying
    try:
        problems = ablation.check_rows(results, base)
    finally:
        ablation.BY_NAME["gamma0"] = original
    assert len(problems) == 1 and problems[0].startswith("gamma0")


def test_a_finished_row_is_skipped(quick, monkeypatch):
    last = quick / "seed" / "seed0" / "last.pt"
    before = last.stat().st_mtime_ns
    cfg = ablation.row_config("seed", quick_base(), 0, quick)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished row must not build or train a run again")

    monkeypatch.setattr(ablation, "fit", no_training)
    history = ablation.train_row(cfg, log=lambda *_: None)
    assert last.stat().st_mtime_ns == before
    assert len(history) == 2


def test_a_killed_row_resumes_to_the_straight_runs_weights(tmp_path, quick, monkeypatch):
    cfg = ablation.row_config("scale_crop_flip", quick_base(), 0, tmp_path)  # one-cycle, augmented
    real_save = training.save_epoch

    def save_then_die(run, epoch, improved):
        real_save(run, epoch, improved)
        if epoch == 0:
            raise KeyboardInterrupt  # killed just after epoch 1 was checkpointed

    monkeypatch.setattr(training, "save_epoch", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        ablation.train_row(cfg, log=lambda *_: None)
    assert load_training_checkpoint(Path(cfg.out) / "last.pt")["epoch"] == 0
    monkeypatch.setattr(training, "save_epoch", real_save)
    history = ablation.train_row(cfg, log=lambda *_: None)
    resumed = load_training_checkpoint(Path(cfg.out) / "last.pt")
    straight = load_training_checkpoint(quick / "scale_crop_flip" / "seed0" / "last.pt")
    assert [h["val_miou"] for h in history] == [h["val_miou"] for h in straight["history"]]
    for name, value in straight["model"].items():
        assert torch.equal(resumed["model"][name], value), name


def test_the_summary_averages_each_rows_seeds():
    runs = [
        {"row": "gamma0", "seed": 1, "val_miou": 0.30, "thin_iou": {"Pole": 0.1}},
        {"row": "seed", "seed": 0, "val_miou": 0.20, "thin_iou": {"Pole": 0.0}},
        {"row": "gamma0", "seed": 0, "val_miou": 0.36, "thin_iou": {"Pole": 0.3}},
        {"row": "gamma0", "seed": 2, "val_miou": 0.33, "thin_iou": {"Pole": 0.2}},
    ]
    seed_row, gamma0 = ablation.summarise(runs)  # in the table's order, not the runs'
    assert seed_row["row"] == "seed" and seed_row["seeds"] == [0]
    assert gamma0["seeds"] == [0, 1, 2]
    assert gamma0["val_miou"] == pytest.approx(np.mean([0.30, 0.36, 0.33]))
    assert (gamma0["low"], gamma0["high"]) == (0.30, 0.36)
    assert gamma0["thin_iou"]["Pole"] == pytest.approx(0.2)
    lines = ablation.summary_table(runs).splitlines()
    assert "| 0, 1, 2 | 0.330 | 0.300-0.360 |" in lines[3] and "one seed" in lines[2]


def test_a_later_command_adds_its_seeds_to_the_json(tmp_path):
    torch.set_num_threads(1)
    for seed in (0, 1):
        assert ablation.main(["--quick", "--out", str(tmp_path), "--rows", "seed", "--seeds", str(seed)]) == 0
    runs = json.loads((tmp_path / "ablation.json").read_text())["rows"]
    assert [(r["row"], r["seed"]) for r in runs] == [("seed", 0), ("seed", 1)]
    assert all(r["cpu"].endswith("1 thread(s)") for r in runs)
    # a folder holding runs of another budget is refused, naming its file, before any training
    other = tmp_path / "other"
    other.mkdir()
    (other / "ablation.json").write_text(json.dumps({"budget": {"epochs": 99}, "rows": []}))
    with pytest.raises(SystemExit, match="other/ablation.json holds runs of another budget"):
        ablation.main(["--quick", "--out", str(other), "--rows", "seed"])
    assert not (other / "seed").exists()


def test_the_recipe_page_shows_the_summary_of_the_recorded_runs():
    """docs/recipe.md's table is what the script prints for docs/results/ablation.json, to the digit."""
    recorded = json.loads((REPO / "docs" / "results" / "ablation.json").read_text())["rows"]
    page = (REPO / "docs" / "recipe.md").read_text()
    assert ablation.summary_table(recorded) in page
    # every ema run took the adamw_onecycle run's steps on its seed (checked when it was recorded)
    ema = [r for r in recorded if r["row"] == "ema"]
    assert ema and all(r["raw_weights_equal_the_adamw_onecycle_row"] for r in ema)
