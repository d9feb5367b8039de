"""Device choice, the mixed-precision choice and learning-rate schedules, for hardware this machine lacks."""

from itertools import pairwise

import pytest
import torch

from camvid_utils import runtime
from camvid_utils.runtime import autocast_dtype, pick_device
from camvid_utils.training import TrainConfig, make_scheduler


@pytest.fixture
def hardware(monkeypatch):
    """Pretend the machine has the accelerators named: ``hardware(cuda=..., mps=..., bf16=...)``."""

    def set_hardware(cuda=False, mps=False, cuda_bf16=False, cpu_bf16=False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: cuda_bf16)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
        monkeypatch.setattr(runtime, "_cpu_has_native_bf16", lambda: cpu_bf16)

    return set_hardware


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"), [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")]
)
def test_pick_device_prefers_cuda_then_mps_then_cpu(hardware, cuda, mps, expected):
    hardware(cuda=cuda, mps=mps)
    assert pick_device() == torch.device(expected)
    assert pick_device("cpu") == torch.device("cpu")


def test_asking_for_cuda_without_it_is_a_clear_error(hardware):
    hardware(cuda=False)
    with pytest.raises(ValueError, match="'cuda' was asked for but CUDA is not available"):
        pick_device("cuda")


@pytest.mark.parametrize(
    ("device", "hw", "expected"),
    [
        ("cuda", {"cuda": True, "cuda_bf16": True}, torch.bfloat16),
        ("cuda", {"cuda": True, "cuda_bf16": False}, torch.float16),  # older GPUs: fp16 with a scaler
        ("cpu", {"cpu_bf16": True}, torch.bfloat16),
        ("cpu", {"cpu_bf16": False}, None),
        ("mps", {"mps": True}, None),
    ],
)
def test_auto_mixed_precision_follows_the_hardware(hardware, device, hw, expected):
    hardware(**hw)
    assert autocast_dtype(torch.device(device)) is expected


def test_forced_mixed_precision_and_a_bad_choice(hardware):
    hardware(cpu_bf16=True)
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "off") is None and autocast_dtype(cpu, "fp16") is torch.float16
    with pytest.raises(ValueError, match="amp must be"):
        autocast_dtype(cpu, "fp8")


def _learning_rates(schedule: str, epochs: int = 4, steps: int = 25) -> list[float]:
    cfg = TrainConfig(schedule=schedule, lr=0.01, epochs=epochs)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    scheduler = make_scheduler(cfg, optimizer, steps)
    rates = []
    for _ in range(epochs * steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_onecycle_peaks_at_the_learning_rate_after_15_percent_then_anneals():
    rates = _learning_rates("onecycle")
    peak = max(range(len(rates)), key=rates.__getitem__)
    assert abs(peak - 0.15 * len(rates)) <= 1 and rates[peak] == pytest.approx(0.01)
    assert rates[0] < 0.001 and rates[-1] < 1e-5
    assert all(a >= b for a, b in pairwise(rates[peak:]))


def test_poly_decays_from_the_learning_rate_towards_zero():
    rates = _learning_rates("poly")
    assert rates[0] == pytest.approx(0.01) and 0 < rates[-1] < 0.001
    assert all(a > b for a, b in pairwise(rates))
    assert rates[len(rates) // 2] == pytest.approx(0.01 * 0.5**0.9, rel=0.01)
