"""Run a notebook top to bottom in a fresh kernel and read what it printed (nbclient).

Used by the tests that check the notebooks from outside: the prose's numbers against the printed
output (test_notebook_claims.py), the exercises done in place (test_notebook_exercises.py) and the
shell cells run from a folder whose name has a space (test_notebook_paths.py).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent
CELL_TIMEOUT_S = 300  # per cell; nbclient can stall after an ipywidgets cell, so a bound, not none


def notebook_env(runs: Path, **changes: str) -> dict[str, str]:
    """The environment of a test kernel: the default path (no CAMVID_CHECKPOINT or CAMVID_ROOT unless
    ``changes`` sets them), smoke mode, no display, this checkout's package, training runs in ``runs``."""
    pythonpath = os.pathsep.join(p for p in [str(REPO), os.environ.get("PYTHONPATH", "")] if p)
    inherited = {k: v for k, v in os.environ.items() if k not in ("CAMVID_CHECKPOINT", "CAMVID_ROOT")}
    return {
        **inherited,
        "CAMVID_SMOKE": "1",
        "MPLBACKEND": "Agg",
        "PYTHONPATH": pythonpath,
        "CAMVID_RUNS": str(runs),
        **changes,
    }


def execute_notebook(nb, cwd: Path, env: dict[str, str]):
    """Execute ``nb`` (an nbformat node, changed in place) with ``cwd`` and ``env``; return it.

    A cell that raises fails the run with nbclient's CellExecutionError, which names the cell.
    """
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # the kernel inherits the environment of the process that starts it
    try:
        client = NotebookClient(
            nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
        )
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return nb


def read_notebook(path: Path):
    return nbformat.read(path, as_version=4)


def printed_text(nb) -> str:
    """Everything the code cells wrote to stdout, in order (the text a learner reads under the cells)."""
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                parts.append(output.get("text", ""))
            elif output.get("output_type") == "execute_result":
                parts.append(output.get("data", {}).get("text/plain", "") + "\n")
    return "".join(parts)


def prose_text(nb) -> str:
    return "\n".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")


def printed_value(text: str, name: str) -> str | None:
    """The value printed after ``name:`` on a line of ``text`` (``"val mIoU: 0.679"`` gives ``"0.679"``)."""
    match = re.search(rf"^{re.escape(name)}: (\S+)", text, re.M)
    return match.group(1) if match else None
