"""Helpers of ``scripts/`` that shape what the README shows."""

import importlib.util
import json

from conftest import REPO


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_joined_history_numbers_a_second_run_on_from_the_first(tmp_path):
    first = [{"epoch": 1, "val_miou": None}, {"epoch": 2, "val_miou": 0.3}]
    second = [{"epoch": 1, "val_miou": 0.4}, {"epoch": 2, "val_miou": 0.5}, {"epoch": 3, "val_miou": None}]
    for name, history in (("a", first), ("b", second)):
        (tmp_path / f"{name}.json").write_text(json.dumps(history))
    joined = _load("make_figures").joined_history([str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert [h["epoch"] for h in joined] == [1, 2, 3, 4, 5]
    assert [h["val_miou"] for h in joined] == [None, 0.3, 0.4, 0.5, None]
