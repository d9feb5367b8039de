"""Device choice, the mixed-precision choice (T4, V100, A100, H100 and ROCm simulated), the loss meter and
learning-rate schedules, for hardware this machine lacks."""

from itertools import pairwise
from pathlib import Path

import pytest
import torch

from camvid_utils import runtime
from camvid_utils.config import TrainConfig
from camvid_utils.losses import FocalLoss
from camvid_utils.model import UNet
from camvid_utils.runtime import (
    LossMeter,
    autocast_dtype,
    configure_backends,
    grad_scaler,
    pick_device,
    sync_lag,
)
from camvid_utils.training import make_scheduler


@pytest.fixture
def hardware(monkeypatch):
    """Pretend the machine has the hardware named: ``hardware(cuda=..., capability=(7, 5), ...)``.

    ``torch.cuda.is_bf16_supported`` says True, as torch 2.14 does on every CUDA card (it counts
    emulation): the choice must come from the compute capability, not from it.
    """

    def set_hardware(cuda=False, mps=False, capability=(0, 0), rocm=False, cpu_bf16=False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: cuda)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
        monkeypatch.setattr(torch.version, "hip", "6.2" if rocm else None)
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


# The cards learners meet: Colab's T4, a V100, an A100, an H100, and an AMD card under ROCm.
CARDS = {
    "T4": ({"capability": (7, 5)}, torch.float16),
    "V100": ({"capability": (7, 0)}, torch.float16),
    "A100": ({"capability": (8, 0)}, torch.bfloat16),
    "H100": ({"capability": (9, 0)}, torch.bfloat16),
    "MI250 (ROCm)": ({"capability": (9, 0), "rocm": True}, torch.bfloat16),
}


@pytest.mark.parametrize("card", CARDS)
def test_a_cuda_card_gets_bf16_only_where_native_else_fp16_with_a_scaler(hardware, card):
    hw, expected = CARDS[card]
    hardware(cuda=True, **hw)
    cuda = torch.device("cuda")
    dtype = autocast_dtype(cuda)
    assert dtype is expected
    scaler = grad_scaler(cuda, dtype)
    if dtype == torch.float16:
        assert isinstance(scaler, torch.amp.GradScaler) and scaler.is_enabled()
    else:
        assert scaler is None  # bf16 has fp32's exponent range: nothing underflows


@pytest.mark.parametrize("card", ["T4", "A100", "H100"])
def test_focal_loss_is_computed_in_float32_under_the_cards_autocast(hardware, card):
    """The card's dtype, run under the CPU's autocast (which has fp16 and bf16 too)."""
    hw, _ = CARDS[card]
    hardware(cuda=True, **hw)
    dtype = autocast_dtype(torch.device("cuda"))
    torch.manual_seed(0)
    model, images = UNet(5, base_channels=4, depth=2), torch.randn(2, 3, 16, 16)
    target = torch.randint(0, 5, (2, 16, 16))
    target[:, :2] = 255
    loss_fn = FocalLoss(gamma=2.0, alpha=torch.tensor([0.5, 1.0, 2.0, 1.0, 0.7]))
    with torch.autocast("cpu", dtype=dtype):
        logits = model(images)  # (B, C, H, W)
        loss = loss_fn(logits, target)
    assert logits.dtype == dtype
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, loss_fn(logits.float(), target), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("device", "hw", "expected"),
    [
        ("cpu", {"cpu_bf16": True}, torch.bfloat16),
        ("cpu", {"cpu_bf16": False}, None),
        ("mps", {"mps": True}, None),
    ],
)
def test_auto_mixed_precision_elsewhere_follows_the_hardware(hardware, device, hw, expected):
    hardware(**hw)
    assert autocast_dtype(torch.device(device)) is expected
    assert grad_scaler(torch.device(device), expected) is None


def test_forced_mixed_precision_and_a_bad_choice(hardware):
    hardware(cpu_bf16=True)
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "off") is None and autocast_dtype(cpu, "fp16") is torch.float16
    assert isinstance(grad_scaler(cpu, torch.float16), torch.amp.GradScaler)
    with pytest.raises(ValueError, match="amp must be"):
        autocast_dtype(cpu, "fp8")


def test_cudnn_autotuning_is_turned_on_for_cuda_only(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    configure_backends(torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False
    configure_backends(torch.device("cuda"))
    assert torch.backends.cudnn.benchmark is True


def test_loss_meter_sums_on_the_device_and_reads_once():
    meter = LossMeter(torch.device("cpu"), lag=3)
    for value in (1.0, 2.0, 3.0, 4.0, 5.0):
        meter.add(torch.tensor(value))
    assert meter.last_checked == pytest.approx(1.5)  # steps 1-2 checked, 3-5 still in flight
    assert meter.mean() == pytest.approx(3.0)


@pytest.mark.parametrize(("lag", "bad"), [(0, float("nan")), (3, float("nan")), (3, float("inf"))])
def test_loss_meter_names_the_first_bad_batch_and_stops_within_lag_steps(lag, bad):
    meter = LossMeter(torch.device("cpu"), lag=lag)
    losses = [1.0, 2.0, bad, 4.0, 5.0, 6.0, 7.0, 8.0]
    added = 0
    with pytest.raises(FloatingPointError, match=rf"^the training loss became {bad} at batch 3$"):
        for value in losses:
            added += 1
            meter.add(torch.tensor(value))
    assert added == 3 + lag


def test_loss_meter_checks_what_is_still_in_flight_when_the_epoch_ends():
    meter = LossMeter(torch.device("cpu"), lag=3)
    for value in (1.0, float("nan")):
        meter.add(torch.tensor(value))
    with pytest.raises(FloatingPointError, match="at batch 2"):
        meter.mean()


def test_the_lag_is_for_cuda_only():
    assert sync_lag(torch.device("cuda")) == 3 and sync_lag(torch.device("cpu")) == 0


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


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), (" Yes ", True), ("on", True), ("0", False), ("false", False), ("", False)],
)
def test_the_smoke_switch_reads_the_usual_spellings(monkeypatch, value, expected):
    monkeypatch.setenv("CAMVID_SMOKE", value)
    assert runtime.smoke_mode() is expected


def test_a_smoke_value_that_means_nothing_is_an_error_not_a_silent_full_run(monkeypatch):
    monkeypatch.setenv("CAMVID_SMOKE", "maybe")
    with pytest.raises(ValueError, match=r"CAMVID_SMOKE='maybe'.*1.*0.*unset"):
        runtime.smoke_mode()


def test_cpu_name_is_the_model_name_line_of_proc_cpuinfo():
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        pytest.skip("no /proc/cpuinfo here")
    line = next((x for x in info.read_text().splitlines() if x.startswith("model name")), None)
    if line is None:
        pytest.skip("/proc/cpuinfo names no model here")
    assert runtime.cpu_name() == line.split(":", 1)[1].strip() != ""
