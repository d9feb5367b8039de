"""The benchmark scripts run at ``--quick`` size and print their figures and ratios, so they cannot rot.

The three scripts run at once, each on one thread, in one module-scoped fixture (about 15 s in
all); the tests then read what each printed. The speeds of a quick run mean nothing, so what is
checked is what must hold at any size: each ratio a script reports is the one its own table gives,
and paths that change no arithmetic (channels-last) give the reference's predictions.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs every benchmark script: out of the short contributor run

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
    (ratio, best) = re.search(r"^ratio best/seed per epoch: ([\d.]+)x \('([^']+)'", text, re.M).groups()
    rows = dict(re.findall(r"^([^\n|]+?)\s+[\d.]+\s+([\d.]+)x \|", text, flags=re.MULTILINE))
    assert {"seed's path", "+ CamVid data", "+ channels-last"} <= set(rows), rows
    assert float(rows["seed's path"]) == 1.0  # the ratio column is relative to the seed's row
    # the ratio it reports is the best row's, and that row is the one it names
    assert float(ratio) == max(map(float, rows.values())) == float(rows[best])
    assert re.search(r"one training step: [\d.]+ GFLOP", text)
    assert re.search(r"matmul peak .*: fp32 \d+ GFLOP/s", text)


def test_bench_infer_prints_a_ratio_per_batch_size(printed):
    text = printed["bench_infer.py"]
    blocks = re.findall(
        r"^batch (\d+):.*?\n(.*?)^ratio best/fp32 at batch \1: ([\d.]+)x \(([^)]+)\)", text, re.M | re.S
    )
    assert [b[0] for b in blocks] == ["1", "2"], text  # quick runs batch 1 and 2
    for _, table, ratio, best in blocks:
        rows = {
            name: (float(vs), float(same))
            for name, vs, same in re.findall(
                r"^\s+(\S[^\n]*?)\s+[\d.]+\s+([\d.]+)x\s+([\d.]+)%$", table, re.M
            )
        }
        assert rows["fp32"] == (1.0, 100.0)  # the reference row: itself, every pixel the same
        # the ratio is the best row's, and the row it names
        assert float(ratio) == max(vs for vs, _ in rows.values()) == rows[best][0]
        # channels-last changes the memory layout, not the maths: the same predictions
        assert rows["channels-last"][1] >= 99.9
