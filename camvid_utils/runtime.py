"""Where code runs: device choice, mixed precision, seeding, and the notebooks' smoke switch."""

from __future__ import annotations

import math
import os
import platform
import random
from pathlib import Path

import numpy as np
import torch

SMOKE_ENV = "CAMVID_SMOKE"


def smoke_mode() -> bool:
    """Return True when ``CAMVID_SMOKE`` is set to a true value: the notebooks' slow cells run tiny (CI).

    Raises ``ValueError`` for a value that is neither true (1, true, yes, on) nor false (0, false,
    no, off, empty), rather than silently running everything at full size.
    """
    value = os.environ.get(SMOKE_ENV, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(
        f"{SMOKE_ENV}={value!r} means neither on nor off: set it to 1 (smoke) or 0, or unset it."
    )


def pick_device(requested: str | None = None) -> torch.device:
    """Return ``requested`` if given, else CUDA, else Apple MPS, else the CPU."""
    if requested:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} was asked for but CUDA is not available here.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cuda_has_native_bf16(device: torch.device) -> bool:
    """Return True when the GPU runs bf16 natively: compute capability 8.0 (Ampere) and up, or ROCm.

    ``torch.cuda.is_bf16_supported()`` is no guide: it also counts emulation (its
    ``including_emulation`` argument defaults to True), so it says yes on a T4 (7.5), where bf16
    has no fast cuDNN convolutions and trains far slower than fp16.
    """
    if torch.version.hip:
        return True
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


def autocast_dtype(device: torch.device, amp: str = "auto") -> torch.dtype | None:
    """Return the autocast dtype to train with on ``device``, or None for plain fp32.

    ``amp="auto"``: on CUDA, bf16 where the card has it natively (``cuda_has_native_bf16``: A100,
    H100, RTX 30xx and later, ROCm), else fp16 with a gradient scaler (T4, V100, RTX 20xx); on CPUs
    with native bf16 instructions (AVX-512 BF16 or AMX) bf16, about 2.5x faster than fp32 there;
    fp32 elsewhere. ``"bf16"``, ``"fp16"`` and ``"off"`` force a choice.
    """
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if amp != "auto":
        raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or 'off', got {amp!r}.")
    if device.type == "cuda":
        return torch.bfloat16 if cuda_has_native_bf16(device) else torch.float16
    if device.type == "cpu" and _cpu_has_native_bf16():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Return the autocast context of ``dtype`` on ``device`` (a disabled one when ``dtype`` is None)."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def grad_scaler(device: torch.device, amp_dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """Return a gradient scaler for fp16 training on ``device``, None for bf16 or fp32.

    fp16 gradients underflow without loss scaling, on any device; bf16 has fp32's range.
    """
    return torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None


def configure_backends(device: torch.device) -> None:
    """Let cuDNN time its convolution algorithms once per input shape and keep the fastest.

    Training crops have one fixed size, so the search runs once; it is off by default in PyTorch.
    A no-op on other devices.
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


class LossMeter:
    """Sums a training epoch's losses on the device and checks them for NaN or inf, ``lag`` steps late.

    Reading a CUDA loss with ``.item()`` makes the host wait until the GPU has finished the step,
    so the next step is not queued while the GPU drains: a stall every step. Here the running sum
    stays on the device; after each step a copy of it starts towards pinned host memory without
    waiting, and the copy made ``lag`` steps earlier, long since arrived, is the one checked. A NaN
    or inf anywhere makes the running sum non-finite from then on, so the first non-finite copy
    names the exact batch, and training stops ``lag`` steps after it at most. ``lag=0`` reads every
    step at once (the CPU, where a read costs nothing).
    """

    def __init__(self, device: torch.device, lag: int = 0):
        self.device, self.lag = device, lag
        self._dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        self.total = torch.zeros((), dtype=self._dtype, device=device)
        self.steps = 0
        self._pending: list[tuple[int, torch.Tensor, object]] = []  # (step, host copy, CUDA event)
        self.last_checked: float | None = None  # running mean as of the last checked step

    def add(self, loss: torch.Tensor) -> None:
        """Add one step's loss (a 0-d tensor); raise ``FloatingPointError`` if a checked sum is not finite."""
        self.total += loss.detach().to(self._dtype)
        self.steps += 1
        if self.device.type == "cuda":
            host = torch.empty((), dtype=self._dtype, pin_memory=True)
            host.copy_(self.total, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self._pending.append((self.steps, host, event))
        else:
            self._pending.append((self.steps, self.total.detach().cpu().clone(), None))
        while len(self._pending) > self.lag:
            self._check(*self._pending.pop(0))

    def _check(self, step: int, host: torch.Tensor, event) -> None:
        if event is not None:
            event.synchronize()  # recorded ``lag`` steps ago: long finished, returns at once
        value = float(host)
        if not math.isfinite(value):
            raise FloatingPointError(f"the training loss became {value} at batch {step}")
        self.last_checked = value / step

    def mean(self) -> float:
        """Check every step not yet checked and return the mean loss: the epoch's one full read."""
        for pending in self._pending:
            self._check(*pending)
        self._pending.clear()
        return float(self.total) / max(self.steps, 1)


def sync_lag(device: torch.device) -> int:
    """Return how many steps late ``LossMeter`` should check losses on ``device``: 3 on CUDA, else 0."""
    return 3 if device.type == "cuda" else 0


def epoch_seed(seed: int, epoch: int, rank: int | None = None) -> int:
    """Return the seed of one epoch's shuffling and augmentation (of one rank's, given ``rank``).

    An epoch's random numbers depend on the run's seed and the epoch number only, so that a resumed
    run draws exactly what an uninterrupted one would have.
    """
    base = seed * 1_000_003 + epoch
    return base if rank is None else base * 1_009 + rank


def epoch_generator(seed: int, epoch: int, rank: int | None = None) -> torch.Generator:
    """Return a CPU generator seeded with ``epoch_seed(seed, epoch, rank)``."""
    return torch.Generator().manual_seed(epoch_seed(seed, epoch, rank))


def drops_last(frames: int, batch_size: int) -> bool:
    """Return whether an epoch drops its last, short batch: only when the split holds more than one batch."""
    return frames > batch_size


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices) from one number."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (legacy code and libraries use the global generator)
    torch.manual_seed(seed)


def get_rng_state() -> dict:
    """Return every random generator's state in a form ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()  # noqa: NPY002
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the generators saved by ``get_rng_state``."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def cpu_name() -> str:
    """Return the CPU's model name from /proc/cpuinfo (or what platform knows), to name beside CPU figures."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
