"""Where code runs: device choice, mixed precision, seeding, and the notebooks' smoke switch."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

SMOKE_ENV = "CAMVID_SMOKE"


def smoke_mode() -> bool:
    """Return True when ``CAMVID_SMOKE`` is set to a true value: every long cell runs tiny (CI)."""
    return os.environ.get(SMOKE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


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


def autocast_dtype(device: torch.device, amp: str = "auto") -> torch.dtype | None:
    """Return the autocast dtype to train with on ``device``, or None for plain fp32.

    ``amp="auto"``: bf16 on CUDA GPUs that support it, else fp16 (with a grad scaler); bf16 on CPUs
    with native bf16 instructions (AVX-512 BF16 or AMX), where it is about 2.5x faster than fp32;
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
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and _cpu_has_native_bf16():
        return torch.bfloat16
    return None


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
