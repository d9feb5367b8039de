"""Course-quality checks on every notebook in ``notebooks/`` (the notebooks themselves run through nbval).

Each check is a function from a notebook (an nbformat node) to a list of problems, so that the same
function is tested on the real notebooks and, below, on small bad notebooks built here: a check that
cannot fail is no check.
"""

from __future__ import annotations

import ast
import re
import statistics
from pathlib import Path

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
BADGE_URL = (
    "https://colab.research.google.com/github/camvid-segmentation/camvid-segmentation/blob/main/notebooks/"
)
BADGE_SVG = "https://colab.research.google.com/assets/colab-badge.svg"
MIN_PROSE_SHARE = 0.40
MAX_MEDIAN_CODE_LINES = 6
MAX_CODE_LINES = 25
# words of prose a chapter may hold: about a quarter of an hour of reading; reference material lives
# once, in docs/, and a chapter links to it rather than repeating it
MAX_PROSE_WORDS = 2300
PROSE_WORDS = {"03_focal_loss_and_training.ipynb": 3600}  # the loss, the weights, a loop, the ablation
SOLUTIONS_DIR = NOTEBOOK_DIR / "solutions"
SOLUTIONS = sorted(SOLUTIONS_DIR.glob("*.ipynb"))


def code_cells(nb) -> list:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def is_colab_setup(cell) -> bool:
    return cell.cell_type == "code" and "google.colab" in cell.source


def parse_cell(source: str) -> ast.Module:
    """Parse a code cell as Python, with IPython magics (``%...``) and shell lines (``!...``) as ``pass``."""
    lines = [
        line[: len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!")) else line
        for line in source.splitlines()
    ]
    return ast.parse("\n".join(lines))


def code_lines(cell) -> int:
    return sum(1 for line in cell.source.splitlines() if line.strip())


def headings(nb) -> list[tuple[int, str]]:
    """Return (cell index, heading text) for every markdown heading, in order."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            found += [(index, m.group(1).strip()) for m in re.finditer(r"^#+\s+(.+)$", cell.source, re.M)]
    return found


def check_no_outputs(nb) -> list[str]:
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {index} has outputs")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {index} has execution_count {cell.execution_count}")
    return problems


def check_colab_badge(nb, name: str) -> list[str]:
    markdown = "\n".join(cell.source for cell in nb.cells[:3] if cell.cell_type == "markdown")
    if BADGE_URL + name not in markdown or "colab-badge.svg" not in markdown:
        return [f"no 'Open in Colab' badge linking to {BADGE_URL + name} in the first cells"]
    return []


def check_colab_setup(nb) -> list[str]:
    """A Colab set-up cell, if any, is the first code cell, runs only in Colab and keeps Colab's torch."""
    cells = code_cells(nb)
    setup = [i for i, cell in enumerate(cells) if is_colab_setup(cell)]
    if not setup:
        return []
    problems = []
    if setup != [0]:
        problems.append(f"Colab set-up code must be the first code cell only, found in code cells {setup}")
    source = cells[setup[0]].source
    if not re.search(r"""if\s+["']google\.colab["']\s+in\s+sys\.modules""", source):
        problems.append('the Colab set-up cell must run only under `if "google.colab" in sys.modules:`')
    if "pip install" in source and "--no-deps" not in source:
        problems.append("the Colab set-up cell must pip install with --no-deps (never replace Colab's torch)")
    return problems


def check_imports_first(nb) -> list[str]:
    """Every import is in the first code cell after the optional Colab set-up cell."""
    cells = [cell for cell in code_cells(nb) if not is_colab_setup(cell)]
    if not cells:
        return ["the notebook has no code cells"]
    problems = []
    for number, cell in enumerate(cells[1:], start=2):
        try:
            tree = parse_cell(cell.source)
        except SyntaxError as err:
            problems.append(f"code cell {number} does not parse: {err}")
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                problems.append(f"code cell {number} imports ({ast.unparse(node)}); move it to the first")
    return problems


def check_no_shell_lines(nb) -> list[str]:
    """No ``!command`` line outside the Colab set-up cell: IPython runs it through whatever shell and
    ``python`` come first on PATH, leaves its paths unquoted, and a failing command passes the cell.
    Commands run through ``subprocess.run([sys.executable, ...], check=True)`` instead."""
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or is_colab_setup(cell):
            continue
        for line in cell.source.splitlines():
            if line.lstrip().startswith("!"):
                problems.append(
                    f"cell {index} runs a shell line ({line.strip()}); use subprocess.run(check=True)"
                )
    return problems


def check_prose_share(nb) -> list[str]:
    share = sum(cell.cell_type == "markdown" for cell in nb.cells) / max(len(nb.cells), 1)
    if share < MIN_PROSE_SHARE:
        return [f"only {share:.0%} of cells are markdown (at least {MIN_PROSE_SHARE:.0%} wanted)"]
    return []


def prose_words(nb) -> int:
    return sum(len(cell.source.split()) for cell in nb.cells if cell.cell_type == "markdown")


def check_prose_length(nb, name: str) -> list[str]:
    limit = PROSE_WORDS.get(name, MAX_PROSE_WORDS)
    if prose_words(nb) > limit:
        return [f"{prose_words(nb)} words of prose (at most {limit}): say each thing once, link docs/"]
    return []


def check_solutions(nb, name: str, folder: Path = SOLUTIONS_DIR) -> list[str]:
    """The Exercises link the chapter's solutions notebook, which exists and opens in Colab as itself."""
    link = f"solutions/{name[:2]}_solutions.ipynb"
    if f"]({link})" not in nb.cells[-1].source:
        return [f"the Exercises do not link {link}"]
    if not (folder / Path(link).name).is_file():
        return [f"{link} does not exist"]
    return check_colab_badge(nbformat.read(folder / Path(link).name, as_version=4), link)


def check_code_cell_length(nb) -> list[str]:
    lengths = [code_lines(cell) for cell in code_cells(nb)]
    if not lengths:
        return []
    problems = []
    if statistics.median(lengths) > MAX_MEDIAN_CODE_LINES:
        problems.append(
            f"median code cell has {statistics.median(lengths)} lines (at most {MAX_MEDIAN_CODE_LINES})"
        )
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and code_lines(cell) > MAX_CODE_LINES:
            problems.append(f"cell {index} has {code_lines(cell)} lines (at most {MAX_CODE_LINES}); split it")
    return problems


def check_ends_with_summary_and_exercises(nb) -> list[str]:
    found = headings(nb)
    titles = [title.lower() for _, title in found]
    if "summary" not in titles or "exercises" not in titles:
        return ["the notebook needs a 'Summary' and an 'Exercises' section at its end"]
    summary = max(i for i, (_, title) in enumerate(found) if title.lower() == "summary")
    if titles[-1] != "exercises" or summary != len(found) - 2:
        return ["the last two sections must be 'Summary' then 'Exercises'"]
    first_cell = found[summary][0]
    if any(cell.cell_type == "code" for cell in nb.cells[first_cell:]):
        return ["no code may follow the Summary"]
    return []


def defined_names(nb) -> set[str]:
    """Names of the functions and classes a notebook defines at top level."""
    names = set()
    for cell in code_cells(nb):
        for node in parse_cell(cell.source).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
    return names


def imported_and_used_names(nb) -> tuple[set[str], set[str]]:
    """Return (names the notebook imports, names it reads)."""
    imported, used = set(), set()
    for cell in code_cells(nb):
        for node in ast.walk(parse_cell(cell.source)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                imported |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                used.add(node.id)
    return imported, used


def check_no_shared_definitions(notebooks: dict[str, object]) -> list[str]:
    """No notebook uses, imports or re-defines a function or class that another notebook defines."""
    problems = []
    defined = {name: defined_names(nb) for name, nb in notebooks.items()}
    stems = {Path(name).stem for name in notebooks}
    for name, nb in notebooks.items():
        imported, used = imported_and_used_names(nb)
        sources = "\n".join(cell.source for cell in code_cells(nb))
        if re.search(r"^\s*%run\b|import_ipynb|\.ipynb['\"]", sources, re.M):
            problems.append(f"{name} runs or imports another notebook; put shared code in camvid_utils")
        for module in imported & stems:
            problems.append(f"{name} imports notebook {module}; put shared code in camvid_utils")
        for other, names in defined.items():
            if other == name:
                continue
            for shared in sorted(names & defined[name]):
                if name < other:
                    problems.append(
                        f"{shared} is defined in both {name} and {other}; move it to camvid_utils"
                    )
            borrowed = (names & used) - defined[name] - imported
            for shared in sorted(borrowed):
                problems.append(f"{name} uses {shared}, which {other} defines; move it to camvid_utils")
    return problems


# words of the test machinery, which a learner's reading never needs (a code comment may say them)
MACHINERY = re.compile(r"\bsmoke\b|\bnbval\b|\bpytest\b|CAMVID_SMOKE|\bCI\b", re.I)


def check_prose_for_learners(nb) -> list[str]:
    return [
        f"markdown cell {index} speaks of the test machinery ({m.group(0)!r}): say it in a code comment"
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "markdown" and (m := MACHINERY.search(cell.source))
    ]


MASK_DRAWERS = {"colorize", "draw_view"}  # colour a mask; side_by_side does when given colors=
LEGENDS = {"legend", "key_figure"}


def check_mask_legends(nb) -> list[str]:
    """A code cell that draws a mask in the classes' colours draws their legend too: a ``classes=``
    or ``key=`` argument, or a ``legend``/``key_figure`` call, in the same cell."""
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        calls = [node for node in ast.walk(parse_cell(cell.source)) if isinstance(node, ast.Call)]
        names = {getattr(call.func, "attr", getattr(call.func, "id", None)) for call in calls}
        keywords = {kw.arg for call in calls for kw in call.keywords}
        draws = names & MASK_DRAWERS or ("side_by_side" in names and "colors" in keywords)
        if draws and not (names & LEGENDS or keywords & {"classes", "key"}):
            problems.append(f"code cell {index} draws a mask without a legend: pass classes= or key=")
    return problems


def check_notebook(nb, name: str) -> list[str]:
    """Every single-notebook check, as one list of problems."""
    return (
        check_no_outputs(nb)
        + check_colab_badge(nb, name)
        + check_colab_setup(nb)
        + check_imports_first(nb)
        + check_no_shell_lines(nb)
        + check_prose_share(nb)
        + check_code_cell_length(nb)
        + check_ends_with_summary_and_exercises(nb)
        + check_prose_for_learners(nb)
        + check_prose_length(nb, name)
        + check_mask_legends(nb)
    )


# --- the real notebooks ------------------------------------------------------------------------


def test_notebooks_exist_and_are_numbered():
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOK_DIR}"
    numbers = [path.name[:2] for path in NOTEBOOKS]
    bad = [path.name for path in NOTEBOOKS if not re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name)]
    assert not bad, f"notebooks must be named NN_lower_case.ipynb: {bad}"
    assert len(set(numbers)) == len(numbers), f"two notebooks share a number: {numbers}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_notebook_course_quality(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    problems = check_notebook(nb, path.name)
    assert not problems, (
        f"{path.name}:\n  "
        + "\n  ".join(problems)
        + (
            "\n(clear outputs with `jupyter nbconvert --clear-output --inplace notebooks/*.ipynb`)"
            if check_no_outputs(nb)
            else ""
        )
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_every_chapter_links_solutions_that_exist(path):
    assert check_solutions(nbformat.read(path, as_version=4), path.name) == []


def test_no_notebook_needs_another():
    notebooks = {path.name: nbformat.read(path, as_version=4) for path in NOTEBOOKS}
    problems = check_no_shared_definitions(notebooks)
    assert not problems, "\n".join(problems)


# --- the checks themselves, on small notebooks built here ---------------------------------------

NAME = "99_tiny.ipynb"
GOOD_CELLS = [
    ("markdown", f"# A tiny notebook\n[![Open In Colab]({BADGE_SVG})]({BADGE_URL}{NAME})"),
    ("code", 'import sys\n\nif "google.colab" in sys.modules:\n    !pip install -e /content/repo --no-deps'),
    ("markdown", "All imports come first."),
    ("code", "import math"),
    ("markdown", "A short cell, then prose that reads it."),
    ("code", "x = math.sqrt(4)\nassert x == 2"),
    ("markdown", "## Summary\nIt works."),
    ("markdown", "## Exercises\n1. Try 9."),
]


def make_notebook(cells):
    nb = nbformat.v4.new_notebook()
    for kind, source in cells:
        new = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
        nb.cells.append(new(source))
    return nb


def with_cell(index, kind, source, cells=GOOD_CELLS):
    cells = list(cells)
    cells[index] = (kind, source)
    return make_notebook(cells)


def test_a_good_notebook_passes():
    assert check_notebook(make_notebook(GOOD_CELLS), NAME) == []


def test_prose_about_the_smoke_switch_fails():
    nb = with_cell(4, "markdown", "In smoke mode this cell trains for one epoch.")
    assert any("markdown cell 4" in p and "smoke" in p for p in check_notebook(nb, NAME))
    nb = with_cell(5, "code", "x = 2  # smoke mode shrinks this\nassert x == 2")
    assert check_notebook(nb, NAME) == []


def test_prose_longer_than_its_budget_fails():
    words = " ".join(["word"] * (MAX_PROSE_WORDS - 40))
    assert check_notebook(with_cell(4, "markdown", words), NAME) == []
    assert any(
        "words of prose" in p for p in check_notebook(with_cell(4, "markdown", words + " more" * 60), NAME)
    )
    assert (
        check_prose_length(with_cell(4, "markdown", words + " more" * 60), "03_focal_loss_and_training.ipynb")
        == []
    )


def test_a_mask_drawn_without_its_legend_fails():
    drawn = "viz.side_by_side([image, mask], colors=train.colors)"
    problems = check_notebook(with_cell(5, "code", drawn), NAME)
    assert any("draws a mask without a legend" in p for p in problems)
    for legended in [
        "viz.side_by_side([image, mask], colors=train.colors, classes=train.classes)",
        "viz.side_by_side([errors], key=viz.ERROR_KEY)",
        "pictures = [viz.colorize(m, colors) for m in masks]\nviz.legend(classes, colors)",
        "viz.side_by_side([image, image])",
    ]:
        assert check_mask_legends(with_cell(5, "code", legended)) == [], legended


@pytest.mark.parametrize("path", SOLUTIONS, ids=[path.name for path in SOLUTIONS])
def test_solutions_draw_every_mask_with_its_legend(path):
    assert check_mask_legends(nbformat.read(path, as_version=4)) == []


def test_a_missing_or_broken_solutions_link_fails(tmp_path):
    link = "One way to answer each: [solutions/99_solutions.ipynb](solutions/99_solutions.ipynb)."
    linked = make_notebook([*GOOD_CELLS[:-1], ("markdown", GOOD_CELLS[-1][1] + "\n\n" + link)])
    assert check_solutions(make_notebook(GOOD_CELLS), NAME, tmp_path) == [
        "the Exercises do not link solutions/99_solutions.ipynb"
    ]
    assert check_solutions(linked, NAME, tmp_path) == ["solutions/99_solutions.ipynb does not exist"]
    badge = f"# Solutions\n[![Open In Colab]({BADGE_SVG})]({BADGE_URL}solutions/99_solutions.ipynb)"
    nbformat.write(make_notebook([("markdown", badge)]), tmp_path / "99_solutions.ipynb")
    assert check_solutions(linked, NAME, tmp_path) == []
    nbformat.write(make_notebook([("markdown", "# Solutions")]), tmp_path / "99_solutions.ipynb")
    assert check_solutions(linked, NAME, tmp_path), "a solutions notebook without its own Colab badge"


def test_outputs_and_execution_counts_fail():
    nb = make_notebook(GOOD_CELLS)
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", text="hi\n")]
    assert any("has outputs" in p for p in check_no_outputs(nb))
    nb = make_notebook(GOOD_CELLS)
    nb.cells[5].execution_count = 7
    assert any("execution_count" in p for p in check_no_outputs(nb))


def test_missing_badge_fails():
    assert check_colab_badge(with_cell(0, "markdown", "# A tiny notebook"), NAME)
    assert check_colab_badge(make_notebook(GOOD_CELLS), "98_other.ipynb"), "the badge must name this notebook"


def test_unguarded_or_late_colab_setup_fails():
    unguarded = with_cell(1, "code", "import google.colab\n!pip install -e /content/repo --no-deps")
    assert check_colab_setup(unguarded)
    replaces_torch = with_cell(
        1, "code", 'import sys\nif "google.colab" in sys.modules:\n    !pip install -e repo'
    )
    assert any("--no-deps" in p for p in check_colab_setup(replaces_torch))
    late = with_cell(5, "code", GOOD_CELLS[1][1])
    assert any("first code cell" in p for p in check_colab_setup(late))


def test_import_after_the_first_code_cell_fails():
    assert check_imports_first(with_cell(5, "code", "import os\nx = 2"))
    assert check_imports_first(with_cell(5, "code", "def f():\n    from os import path\n    return path"))
    assert not check_imports_first(with_cell(5, "code", "%matplotlib inline\nx = 2"))


def test_a_shell_line_outside_the_colab_cell_fails():
    assert check_no_shell_lines(with_cell(5, "code", "!python -m camvid_utils predict {path}"))
    assert check_no_shell_lines(with_cell(5, "code", "x = 1\n    !{command}"))
    assert not check_no_shell_lines(make_notebook(GOOD_CELLS)), "the Colab cell may use !pip"


def test_too_little_prose_fails():
    cells = GOOD_CELLS + [("code", "y = 1")] * 8
    assert check_prose_share(make_notebook(cells))


def test_long_code_cells_fail():
    too_long = "\n".join(f"x{i} = {i}" for i in range(MAX_CODE_LINES + 1))
    assert any("split it" in p for p in check_code_cell_length(with_cell(5, "code", too_long)))
    medium = "\n".join(f"x{i} = {i}" for i in range(MAX_MEDIAN_CODE_LINES + 2))
    cells = [(kind, medium) if kind == "code" else (kind, source) for kind, source in GOOD_CELLS]
    assert any("median" in p for p in check_code_cell_length(make_notebook(cells)))


def test_missing_or_misplaced_summary_and_exercises_fail():
    assert check_ends_with_summary_and_exercises(make_notebook(GOOD_CELLS[:-1]))
    swapped = GOOD_CELLS[:-2] + [GOOD_CELLS[-1], GOOD_CELLS[-2]]
    assert check_ends_with_summary_and_exercises(make_notebook(swapped))
    code_after = GOOD_CELLS + [("code", "x = 3")]
    assert check_ends_with_summary_and_exercises(make_notebook(code_after))
    more_after = GOOD_CELLS + [("markdown", "## Appendix")]
    assert check_ends_with_summary_and_exercises(make_notebook(more_after))


def test_sharing_definitions_between_notebooks_fails():
    defines = make_notebook(GOOD_CELLS + [("code", "def helper():\n    return 1")])
    uses = make_notebook(GOOD_CELLS + [("code", "%run 98_defines.ipynb\nhelper()")])
    problems = check_no_shared_definitions({"98_defines.ipynb": defines, "99_uses.ipynb": uses})
    assert any("runs or imports another notebook" in p for p in problems)
    assert any("uses helper" in p for p in problems)
    copied = make_notebook(GOOD_CELLS + [("code", "def helper():\n    return 2")])
    problems = check_no_shared_definitions({"98_defines.ipynb": defines, "99_copies.ipynb": copied})
    assert any("defined in both" in p for p in problems)
    alone = check_no_shared_definitions(
        {"98_defines.ipynb": defines, "99_tiny.ipynb": make_notebook(GOOD_CELLS)}
    )
    assert alone == []
