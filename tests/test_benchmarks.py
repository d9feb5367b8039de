"""The benchmark scripts run at ``--quick`` size and print their figures and ratios, so they cannot rot.

The three scripts run at once, each on one thread, in one module-scoped fixture (about 15 s in
all); the tests then read what each printed. The figures of a quick run mean nothing: only that
they are there and are sane numbers is checked.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TIMEOUT_S = 300  # catches a hang; a quick run takes 5-10 s alone, far longer beside a training job
SCRIPTS = ("bench_data.py", "bench_train.py", "bench_infer.py")


@pytest.fixture(scope="module")
def printed() -> dict[str, str]:
    """Return what each benchmark printed with ``--quick``, after checking that it exited with 0."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    runs = {
        name: subprocess.Popen(
            [sys.executable, str(REPO / "benchmarks" / name), "--quick"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for name in SCRIPTS
    }
    out = {}
    for name, run in runs.items():
        try:
            stdout, stderr = run.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for other in runs.values():
                other.kill()
            pytest.fail(f"benchmarks/{name} --quick took more than {TIMEOUT_S} s")
        assert run.returncode == 0, f"benchmarks/{name} --quick failed:\n{stderr[-3000:]}"
        out[name] = stdout
    return out


def _ratios(text: str, pattern: str) -> list[float]:
    values = [float(v) for v in re.findall(pattern, text, flags=re.MULTILINE)]
    assert values, f"no line matching {pattern!r} in:\n{text}"
    return values


def test_bench_data_prints_the_ratio_and_checks_both_paths_agree(printed):
    text = printed["bench_data.py"]
    (ratio,) = _ratios(text, r"^ratio seed/CamVid: ([\d.]+)x")
    assert ratio > 1  # the lookup cannot lose to 32 passes over the image, even at quick size
    assert "agree on every labelled pixel" in text
    assert re.search(r"PNG decoding is \d+% of a CamVid sample", text)


def test_bench_train_prints_every_lever_and_the_ratio(printed):
    text = printed["bench_train.py"]
    (ratio,) = _ratios(text, r"^ratio best/seed per epoch: ([\d.]+)x")
    assert ratio >= 1  # the best row is at least the seed's own
    for row in ("seed's path", "+ CamVid data", "+ channels-last"):
        assert re.search(rf"^{re.escape(row)}\s+[\d.]+\s+[\d.]+x \|", text, flags=re.MULTILINE), row
    assert re.search(r"one training step: [\d.]+ GFLOP", text)
    assert re.search(r"matmul peak .*: fp32 \d+ GFLOP/s", text)


def test_bench_infer_prints_a_ratio_per_batch_size(printed):
    text = printed["bench_infer.py"]
    ratios = _ratios(text, r"^ratio best/fp32 at batch \d+: ([\d.]+)x")
    assert len(ratios) == 2 and all(r >= 1 for r in ratios)  # quick runs batch 1 and 2
    agreement = [float(v) for v in re.findall(r"([\d.]+)%$", text, flags=re.MULTILINE)]
    assert agreement and all(0 <= a <= 100 for a in agreement)
