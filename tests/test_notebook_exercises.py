"""The exercises a learner does by changing a cell in place, done here by a program.

Each entry changes the cells an exercise points at (a text replacement in a copy of the notebook),
and the copy must then run to its end in smoke mode: a learner doing an exercise never meets an error
they did not cause. The exercises of one notebook that change different cells are applied together,
one run per notebook, to keep the cost of CI low. Exercises that ask for a new cell are not here (their
answers are in notebooks/solutions/, which nbval runs like the chapters).
Notebook 2's first exercise is the exception that teaches: without the padding, the 360-row frame
must fail at the decoder walk, with PyTorch's size error, and nowhere earlier.
"""

from __future__ import annotations

import re

import pytest
from nbclient.exceptions import CellExecutionError
from notebook_runner import REPO, execute_notebook, notebook_env, read_notebook

# each run executes whole notebooks (minutes): outside the contributors' short run, in `pytest`
pytestmark = pytest.mark.slow

# notebook -> [(exercise number, text in a code cell, what the learner writes instead)]
IN_PLACE = {
    "01_data_exploration.ipynb": [
        (1, "counts = pixel_counts(train)",
         'counts = pixel_counts(CamVid(root, "val", class_set="camvid11"))'),
        (2, "viz.plot_class_frequencies(counts, train.classes, train.colors)",
         "viz.plot_class_frequencies(counts, train.classes, train.colors, log=True)"),
        (4, "transform=train_preset((360, 480))", "transform=train_preset((360, 480), scale=(0.5, 0.8))"),
        (5, "h, w = mask.shape[0] // 2, mask.shape[1] // 2", "h, w = mask.shape[0] * 2, mask.shape[1] * 2"),
    ],
    "03_focal_loss_and_training.ipynb": [
        (1, "GAMMA = 2.0", "GAMMA = 0.5"),
        (2, 'out=str(RUN), num_workers=0)', 'out=str(RUN), num_workers=0, alpha="median_frequency")'),
    ],
    "05_inspecting_predictions.ipynb": [
        (5, 'val = CamVid(root, "val", class_set=loaded.class_set)',
         'val = CamVid(root, "train", class_set=loaded.class_set)'),
    ],
    "06_video.ipynb": [
        (1, "WINDOW = 3", "WINDOW = 5"),  # exercise 3 (flip TTA on top) would double the cost: not here
    ],
    "07_your_own_data.ipynb": [
        (2, "np.where(ids == ROAD, 255, 0)", "np.where(ids == ROAD, 1, 0)"),
        (4, 'alpha="inverse_sqrt",', "alpha=None,"),
    ],
    "08_transfer_learning.ipynb": [
        (1, "FREEZE = 1", "FREEZE = 0"),
        (2, "WIDTH = 16", "WIDTH = 8"),
    ],
}  # fmt: skip


def exercise_texts(nb) -> dict[int, str]:
    """The numbered items of the notebook's Exercises section."""
    section = nb.cells[-1].source.split("## Exercises", 1)[-1]
    return {
        int(m.group(1)): m.group(2)
        for m in re.finditer(r"^(\d+)\. (.+?)(?=^\d+\. |\Z)", section, re.M | re.S)
    }


def apply(nb, changes) -> list[str]:
    """Replace each change's text in the one code cell holding it; return the problems."""
    problems = []
    for number, old, new in changes:
        cells = [cell for cell in nb.cells if cell.cell_type == "code" and old in cell.source]
        if len(cells) != 1:
            problems.append(f"exercise {number}: {old!r} is in {len(cells)} code cells, not one")
            continue
        cells[0].source = cells[0].source.replace(old, new)
    return problems


@pytest.mark.parametrize("name", sorted(IN_PLACE), ids=lambda name: name[:2])
def test_the_exercises_done_in_place_run_to_the_end(name, tmp_path):
    nb = read_notebook(REPO / "notebooks" / name)
    numbered = exercise_texts(nb)
    assert all(number in numbered for number, _, _ in IN_PLACE[name]), sorted(numbered)
    assert apply(nb, IN_PLACE[name]) == []
    execute_notebook(nb, REPO / "notebooks", notebook_env(tmp_path / "runs", TMPDIR=str(tmp_path)))


def test_without_padding_the_decoder_fails_where_notebook_2_says(tmp_path):
    nb = read_notebook(REPO / "notebooks" / "02_building_the_unet.ipynb")
    assert "Remove the `F.pad` line" in exercise_texts(nb)[1]
    pad = "x = F.pad(x, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])"
    assert apply(nb, [(1, pad, "pass")]) == []
    with pytest.raises(CellExecutionError) as failed:
        execute_notebook(nb, REPO / "notebooks", notebook_env(tmp_path / "runs"))
    assert failed.value.ename == "RuntimeError" and "Sizes of tensors must match" in failed.value.evalue
    walked = [cell for cell in nb.cells if "for up, skip in zip(ups" in cell.source]
    assert walked[0].outputs and walked[0].outputs[-1].get("output_type") == "error", "it failed elsewhere"


def test_exercise_texts_reads_the_numbered_items():
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("## Summary\n- x\n\n## Exercises\n\n1. One\n   more.\n2. Two")]
    assert exercise_texts(nb) == {1: "One\n   more.\n", 2: "Two"}
    assert apply(nb, [(1, "absent", "x")]) == ["exercise 1: 'absent' is in 0 code cells, not one"]
