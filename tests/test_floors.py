"""The version floors in requirements.txt and pyproject.toml against the APIs the code uses.

``API_FLOORS`` lists every API the code uses that is younger than the oldest releases a learner
might have: the text that marks its use, the package and the first release that has it. A floor
below one of them, a row whose API the code no longer uses, two files that disagree, or a floor
above what Google Colab ships (the course must keep working there) fails here.
"""

import re
import sys
from pathlib import Path

import pytest
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("camvid_utils", "benchmarks", "scripts", "tests")

# (text that marks the use, package, first release that has it, what it is)
API_FLOORS = [
    ("torch.amp.GradScaler", "torch", "2.3", "device-generic gradient scaler (earlier: torch.cuda.amp only)"),
    (
        'amp="fp16"',
        "torch",
        "2.3",
        "fp16 under CPU autocast: the tests run the fp16 path so",
    ),
    ("FlopCounterMode", "torch", "2.1", "torch.utils.flop_counter (bench_train)"),
    ("lr_scheduler.LRScheduler", "torch", "2.0", "the public scheduler base class"),
    ("torch.compile", "torch", "2.0", "bench_train's compile row"),
    (
        "weights_only=True",
        "torch",
        "2.10",
        "checkpoint loading that runs no code: weights_only=True was bypassed to run code up to 2.5 "
        "(CVE-2025-32434, fixed in 2.6) and to corrupt memory up to 2.9.1 "
        "(GHSA-63cw-57p8-fm3p, fixed in 2.10)",
    ),
    ("antialias=True", "torch", "1.11", "antialiased bilinear F.interpolate"),
    ("tv_tensors", "torchvision", "0.16", "torchvision.tv_tensors (earlier: datapoints)"),
    ("v2.ToDtype(", "torchvision", "0.16", "ToDtype(scale=True)"),
    ("pairwise", "python", "3.10", "itertools.pairwise"),
    ("strict=True", "python", "3.10", "zip(..., strict=True)"),
]
# What Google Colab ships; no floor may be above it.
COLAB = {"torch": "2.11", "torchvision": "0.26", "ipywidgets": "7.7.1"}


def _floor(requirement: str) -> tuple[str, str] | None:
    match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)\s*", requirement)
    return (match[1].lower(), match[2]) if match else None


def requirements_floors() -> dict[str, str]:
    """Return ``{package: floor}`` from requirements.txt (comments and ``-e .`` skipped)."""
    lines = (line.split("#")[0] for line in (REPO / "requirements.txt").read_text().splitlines())
    return dict(floor for line in lines if (floor := _floor(line)))


def pyproject_floors() -> dict[str, str]:
    """Return ``{package: floor}`` from pyproject.toml's dependencies and extras, plus ``python``.

    Read with a regular expression, not ``tomllib``: that arrived in Python 3.11, the floor is 3.10.
    """
    text = (REPO / "pyproject.toml").read_text()
    floors = dict(floor for quoted in re.findall(r'"([^"]+)"', text) if (floor := _floor(quoted)))
    floors["python"] = re.search(r'requires-python\s*=\s*">=([0-9.]+)"', text)[1]
    return floors


def used(text: str) -> list[Path]:
    """Return the source files (package, benchmarks, scripts, tests; not this file) that hold ``text``."""
    files = [p for folder in SOURCES for p in sorted((REPO / folder).rglob("*.py"))]
    return [p for p in files if p.name != "test_floors.py" and text in p.read_text()]


def test_both_files_give_the_same_floors():
    ours, theirs = requirements_floors(), pyproject_floors()
    shared = ours.keys() & theirs.keys()
    assert {"torch", "torchvision", "numpy", "pillow"} <= shared
    assert {k: ours[k] for k in shared} == {k: theirs[k] for k in shared}


@pytest.mark.parametrize(("text", "package", "first", "what"), API_FLOORS, ids=[row[0] for row in API_FLOORS])
def test_every_api_used_exists_at_the_floor(text, package, first, what):
    assert used(text), f"nothing uses {text!r} ({what}) any more: drop its row from API_FLOORS"
    floor = pyproject_floors()[package]
    assert Version(floor) >= Version(first), (
        f"{what} needs {package}>={first} ({', '.join(p.name for p in used(text))}), but the floor is {floor}"
    )


def test_torchvision_floor_is_the_release_paired_with_torchs():
    """torchvision pins one torch release each: 0.18 came with 2.3, 0.19 with 2.4, and so on."""
    floors = pyproject_floors()
    torch_minor = Version(floors["torch"]).minor
    assert Version(floors["torchvision"]) >= Version(f"0.{torch_minor + 15}")


@pytest.mark.parametrize("package", COLAB)
def test_no_floor_is_above_what_colab_ships(package):
    floors = {**requirements_floors(), **pyproject_floors()}
    assert Version(floors[package]) <= Version(COLAB[package])


def test_this_python_and_torch_meet_the_floors():
    import torch
    import torchvision

    floors = pyproject_floors()
    assert sys.version_info >= Version(floors["python"]).release
    assert Version(torch.__version__.split("+")[0]) >= Version(floors["torch"])
    assert Version(torchvision.__version__.split("+")[0]) >= Version(floors["torchvision"])
