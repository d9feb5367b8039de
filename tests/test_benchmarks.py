"""The benchmark scripts run at ``--quick`` size and print their figures and ratios, so they cannot rot.

The scripts run at once, each on one thread, in one module-scoped fixture (about 15 s in
all); the tests then read what each printed. The speeds of a quick run mean nothing, so what is
checked is what must hold at any size: each ratio or share a script reports is the quotient of the
figures it prints, recomputed here from those figures within their rounding; the best row it names
is the fastest; and paths that change no arithmetic (channels-last) give the reference's predictions.
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
SCRIPTS = ("bench_data.py", "bench_train.py", "bench_infer.py", "bench_transfer.py")


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


def figure(*printed: str) -> tuple[float, float]:
    """Return the sum of printed figures and how far it may be from the true sum by their rounding."""
    half = lambda s: 0.5 * 10 ** -len(s.partition(".")[2])
    return sum(map(float, printed)), sum(map(half, printed))


def assert_quotient(printed: str, numerator, denominator, scale: float = 1.0) -> None:
    """Fail unless ``printed`` is ``scale * numerator / denominator`` to the rounding of all three.

    ``numerator`` and ``denominator`` are printed figures or ``figure(...)`` sums of them.
    """
    (n, dn), (d, dd) = (x if isinstance(x, tuple) else figure(x) for x in (numerator, denominator))
    r, dr = figure(printed)
    low, high = scale * (n - dn) / (d + dd) - dr, scale * (n + dn) / (d - dd) + dr
    assert low <= r <= high, f"{printed} is not {scale} x {n} / {d}: outside {low:.3f} .. {high:.3f}"


def test_bench_data_prints_the_ratio_and_checks_both_paths_agree(printed):
    text = printed["bench_data.py"]
    (ratio,) = re.findall(r"^ratio seed/CamVid: ([\d.]+)x", text, re.M)
    assert float(ratio) > 1  # the lookup cannot lose to 32 passes over the image, even at quick size
    (seed,) = re.findall(r"^seed \(.*?\): +([\d.]+) ms per sample", text, re.M)
    (ours,) = re.findall(r"^CamVid \(.*?\): +([\d.]+) ms per sample", text, re.M)
    assert_quotient(ratio, seed, ours)
    parts = dict(re.findall(r"^  (\S[^\n]*?) +([\d.]+)$", text, re.M))
    pil = figure(parts["PIL decode, frame"], parts["PIL decode, label"])
    tv = figure(parts["torchvision decode_png, frame"], parts["torchvision decode_png, label"])
    png = re.search(
        r"PNG decoding is (\d+)% of a CamVid sample; ratio PIL/torchvision decode_png: ([\d.]+)x", text
    )
    assert png, text
    share, png_ratio = png.groups()
    assert "agree on every labelled pixel" in text
    assert_quotient(share, pil, ours, scale=100)
    assert_quotient(png_ratio, pil, tv)


def test_bench_train_prints_every_lever_and_the_ratio(printed):
    text = printed["bench_train.py"]
    (ratio, best) = re.search(r"^ratio best/seed per epoch: ([\d.]+)x \('([^']+)'", text, re.M).groups()
    rows = {
        name: (rate, vs)
        for name, rate, vs in re.findall(r"^([^\n|]+?)\s+([\d.]+)\s+([\d.]+)x \|", text, flags=re.MULTILINE)
    }
    assert {"seed's path", "+ CamVid data", "+ channels-last"} <= set(rows), rows
    assert float(rows["seed's path"][1]) == 1.0  # the ratio column is relative to the seed's row
    seed_rate = rows["seed's path"][0]
    for rate, vs in rows.values():  # each row's images/s over the seed's, from the printed rates
        assert_quotient(vs, rate, seed_rate)
    # the row it names is the one with the most images/s, and the ratio it reports is that row's
    assert float(rows[best][0]) == max(float(rate) for rate, _ in rows.values()), (best, rows)
    assert_quotient(ratio, rows[best][0], seed_rate)
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
            name: (rate, vs, float(same))
            for name, rate, vs, same in re.findall(
                r"^\s+(\S[^\n]*?)\s+([\d.]+)\s+([\d.]+)x\s+([\d.]+)%$", table, re.M
            )
        }
        assert (float(rows["fp32"][1]), rows["fp32"][2]) == (1.0, 100.0)  # itself, every pixel the same
        for rate, vs, _ in rows.values():  # each row's images/s over fp32's, from the printed rates
            assert_quotient(vs, rate, rows["fp32"][0])
        # the row it names is the one with the most images/s, and the ratio it reports is that row's
        assert float(rows[best][0]) == max(float(rate) for rate, _, _ in rows.values()), (best, rows)
        assert_quotient(ratio, rows[best][0], rows["fp32"][0])
        # channels-last changes the memory layout, not the maths: the same predictions
        assert rows["channels-last"][2] >= 99.9


def test_bench_transfer_prints_each_ratio_from_its_own_rates(printed):
    text = printed["bench_transfer.py"]
    rates = dict(re.findall(r"^  ((?:course|Lite0) U-Net [^\n]*?)\s+([\d.]+)$", text, re.M))
    assert len(rates) == 4 + 6, text  # 2 models x (2 training precisions + 3 inference paths)
    for amp in ("fp32", "bf16"):
        ratio = re.search(rf"^ratio Lite0/course U-Net, training {amp}: ([\d.]+)x$", text, re.M).group(1)
        assert_quotient(ratio, rates[f"Lite0 U-Net {amp}"], rates[f"course U-Net {amp}"])
    best = {
        m: max(rates[f"{m} fp32"], rates[f"{m} bf16"], key=float) for m in ("Lite0 U-Net", "course U-Net")
    }
    faster = re.search(r"each in its faster precision: ([\d.]+)x$", text, re.M).group(1)
    assert_quotient(faster, best["Lite0 U-Net"], best["course U-Net"])
    for path in ("PyTorch fp32", "PyTorch bf16", "onnxruntime"):
        ratio = re.search(rf"^ratio Lite0/course U-Net, inference {path}: ([\d.]+)x$", text, re.M).group(1)
        assert_quotient(ratio, rates[f"Lite0 U-Net {path}"], rates[f"course U-Net {path}"])
    assert "course U-Net: 4.37 M parameters" in text and "Lite0 U-Net: 5.20 M parameters" in text
