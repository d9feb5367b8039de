"""``benchmarks/gpu_check.py --quick``: the GPU check's every step, tiny, on the CPU, in a subprocess.

It trains the gpu preset straight and killed-then-resumed, evaluates, and times both data paths; on
the CPU a resumed run must match the straight one bit for bit.
"""

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

TIMEOUT_S = 300  # about 35 s alone on 2 cores; far more beside other jobs


@pytest.fixture(scope="module")
def summary() -> str:
    """Return what ``gpu_check.py --quick`` printed, after checking that it exited with 0."""
    run = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--quick"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert run.returncode == 0, f"gpu_check.py --quick failed:\n{run.stderr[-3000:]}"
    return run.stdout.split("\nsummary\n", 1)[1]


@pytest.mark.slow
def test_gpu_check_quick_resumes_exactly_and_names_the_hardware(summary):
    assert re.search(r"^  device: +CPU: .+, \d+ thread\(s\)", summary, flags=re.MULTILINE)
    assert re.search(r"^  dtype: +(torch\.bfloat16 autocast|float32 \(no autocast\)), gradient scaler off$",
                     summary, flags=re.MULTILINE)  # fmt: skip
    assert re.search(r"^  resume exact: +yes$", summary, flags=re.MULTILINE)
    (miou,) = re.findall(r"val mIoU ([\d.]+) on 1 sample frame", summary)
    assert 0 <= float(miou) <= 1


@pytest.mark.slow
def test_gpu_check_quick_times_both_data_paths(summary):
    pattern = r"DataLoader \(0 workers\) ([\d.]+), on device ([\d.]+) \(([\d.]+)x\)"
    loader, device, ratio = (float(v) for v in re.findall(pattern, summary)[0])
    assert loader > 0 and device > 0
    assert ratio == pytest.approx(device / loader, rel=0.01, abs=0.006)  # printed rounded
    assert re.search(r"peak memory: +DataLoader [\d.]+ GiB resident .*; on device [\d.]+ GiB", summary)
