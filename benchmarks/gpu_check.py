"""One command that checks a GPU: train, kill and resume, evaluate, and time both data paths.

On the best device there is (CUDA, then MPS, then the CPU), with the mixed precision
``runtime.autocast_dtype`` picks for it:

1. trains a few short epochs of the gpu preset (``TrainConfig.gpu``) on the bundled sample;
2. trains the same run again, killed after its first epoch's checkpoint, then resumed, and compares
   the two: "resume exact" means the same losses, scores and final weights, bit for bit;
3. scores the best checkpoint on the sample's validation frames (``evaluate_checkpoint``);
4. times training steps of the paper-width U-Net (base 64, 31 M parameters) on 360x480 crops,
   batch 8, fed by the DataLoader and by the on-device augmentation (``device_augment``);
5. prints a summary: device, compute capability, dtype, images/s, peak memory, resume exact.

The sample is five training frames: the scores mean nothing, the checks and speeds do. On CUDA the
bits of a resumed run may differ (cuDNN's autotuned kernels are not bitwise deterministic); the
summary then gives the largest weight difference instead of "yes".

    python benchmarks/gpu_check.py                   # on the GPU (minutes)
    python benchmarks/gpu_check.py --quick           # the same, tiny, on the CPU: under a minute (CI)
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from bench_loader import DeviceEpoch
from torch.utils.data import DataLoader, Subset

from camvid_utils.checkpoint import load_checkpoint, load_model
from camvid_utils.config import TrainConfig
from camvid_utils.data import CamVid
from camvid_utils.device_augment import DeviceAugment, preload_split
from camvid_utils.evaluation import evaluate_checkpoint
from camvid_utils.locations import sample_root
from camvid_utils.losses import FocalLoss
from camvid_utils.model import UNet, count_parameters
from camvid_utils.runtime import autocast_dtype, configure_backends, grad_scaler, pick_device
from camvid_utils.training import (
    fit,
    make_optimizer,
    train_one_epoch,
    uses_device_augment,
)
from camvid_utils.transforms import train_preset


class Killed(Exception):
    """Stands for a kill right after an epoch's checkpoint was written."""


def device_name(device: torch.device) -> str:
    """Return the card's (or the CPU's) name and, on CUDA, its compute capability."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"{torch.cuda.get_device_name(device)} (compute capability {major}.{minor})"
    if device.type == "cpu":
        try:
            models = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line]
            name = models[0].split(":", 1)[1].strip()
        except (OSError, IndexError):
            name = platform.processor() or "unknown CPU"
        return f"CPU: {name}, {torch.get_num_threads()} thread(s) (no compute capability)"
    return str(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> str:
    """Return the peak memory so far: CUDA's allocated bytes, or the process's resident set on a CPU."""
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB allocated on the GPU"
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return f"{rss_kib / 2**20:.2f} GiB resident (whole process, CPU)"


def train_straight_and_resumed(cfg: TrainConfig, work: Path) -> tuple[list[dict], list[dict], float]:
    """Train ``cfg`` straight and killed-then-resumed; return both histories and the largest weight gap."""
    quiet = lambda *_: None  # noqa: E731
    straight = fit(replace(cfg, out=str(work / "straight")), log=quiet)

    def kill_after_first_epoch(line: str) -> None:
        if line.startswith("epoch 1/"):
            raise Killed

    part = replace(cfg, out=str(work / "resumed"))
    try:
        fit(part, log=kill_after_first_epoch)
    except Killed:
        pass
    resumed = fit(part, resume=True, log=quiet)
    a = load_checkpoint(work / "straight" / "last.pt")["model"]
    b = load_checkpoint(work / "resumed" / "last.pt")["model"]
    gap = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())
    return straight, resumed, gap


def throughput(args, device: torch.device, amp_dtype, path: str, data: Path) -> tuple[float, str]:
    """Time training steps of the paper-width U-Net fed by one data path; return images/s and peak memory."""
    size, batch = tuple(args.size), args.batch_size
    frames = [i % 5 for i in range(batch * (args.steps + args.warmup))]
    torch.manual_seed(0)
    model = UNet(32, 3, args.base_channels, args.depth, bilinear=False).to(device)
    model = model.to(memory_format=torch.channels_last)
    cfg = TrainConfig.gpu(str(data))
    optimizer, loss_fn = make_optimizer(cfg, model), FocalLoss(gamma=2.0).to(device)
    scaler = grad_scaler(device, amp_dtype)
    if path == "device":
        images, masks = preload_split(CamVid(data, "train"), device)
        augment = DeviceAugment(images, masks, size, batch_size=batch, scale=cfg.scale, hflip=cfg.hflip,
                                jitter=cfg.jitter)  # fmt: skip
        batches = DeviceEpoch(augment, frames[: batch * args.warmup], batch, 0)
        timed = DeviceEpoch(augment, frames[batch * args.warmup :], batch, 1)
    else:
        dataset = CamVid(data, "train", transform=train_preset(size, scale=cfg.scale, hflip=cfg.hflip,
                                                              jitter=cfg.jitter))  # fmt: skip
        make = lambda n: DataLoader(Subset(dataset, frames[:n]), batch_size=batch, shuffle=True,  # noqa: E731
                                    num_workers=args.workers, pin_memory=device.type == "cuda")  # fmt: skip
        batches, timed = make(batch * args.warmup), make(batch * args.steps)
    step = dict(amp_dtype=amp_dtype, scaler=scaler, channels_last=True, desc=f"{path} (warm-up)")
    train_one_epoch(model, batches, loss_fn, optimizer, None, device, **step)  # cuDNN autotuning
    reset_peak(device)
    tic = time.perf_counter()
    train_one_epoch(model, timed, loss_fn, optimizer, None, device, **{**step, "desc": path})  # ends synced
    rate = batch * args.steps / (time.perf_counter() - tic)
    return rate, peak_memory(device)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", help="default: the best available (CUDA, MPS, CPU)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the short gpu-preset run")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per data path")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (cuDNN autotuning)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=(360, 480), metavar=("H", "W"))
    parser.add_argument("--base-channels", type=int, default=64, help="64: the U-Net paper's widths")
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="DataLoader workers")
    parser.add_argument("--quick", action="store_true", help="on the CPU, tiny sizes: under a minute (CI)")
    args = parser.parse_args(argv)
    data = sample_root()
    overrides = dict(epochs=args.epochs, num_workers=args.workers, device=args.device)
    if args.quick:
        args.device, args.steps, args.warmup, args.batch_size = "cpu", 2, 1, 2
        args.size, args.base_channels, args.depth, args.workers = (48, 64), 4, 2, 0
        overrides = dict(epochs=2, num_workers=0, device="cpu", image_size=(48, 64), crop_size=(48, 64),
                         base_channels=4, depth=2, batch_size=2, max_eval_images=1,
                         data_path="device")  # as CUDA's "auto" does  # fmt: skip
    device = pick_device(args.device)
    configure_backends(device)
    amp_dtype = autocast_dtype(device)
    cfg = TrainConfig.gpu(str(data), **overrides)
    scaler = grad_scaler(device, amp_dtype) is not None
    print(f"device: {device_name(device)}")
    precision = f"{amp_dtype} autocast" if amp_dtype else "float32 (no autocast)"
    print(f"precision: {precision}, gradient scaler {'on' if scaler else 'off'}")
    print(f"cuDNN autotuning (benchmark): {'on' if torch.backends.cudnn.benchmark else 'off (not CUDA)'}")
    path = "on device" if uses_device_augment(cfg, device) else "DataLoader"
    print(f"gpu preset on {data}: {cfg.epochs} epochs, {path} batches")

    with tempfile.TemporaryDirectory() as work:
        tic = time.perf_counter()
        straight, resumed, gap = train_straight_and_resumed(cfg, Path(work))
        train_s = time.perf_counter() - tic
        strip = lambda history: [{k: v for k, v in h.items() if k != "seconds"} for h in history]  # noqa: E731
        exact = strip(straight) == strip(resumed) and gap == 0
        losses = " -> ".join(f"{h['train_loss']:.3f}" for h in straight)
        print(
            f"trained straight, then killed after epoch 1 and resumed: {train_s:.0f} s; train loss {losses}"
        )
        loaded = load_model(Path(work) / "straight" / "best.pt", device=device)
        scores = evaluate_checkpoint(loaded, data, "val", device=device, max_images=cfg.max_eval_images)
        miou, frames = scores.confusion.miou(), scores.num_images

    params = count_parameters(UNet(32, 3, args.base_channels, args.depth, bilinear=False)) / 1e6
    rates, peaks = {}, {}
    for name in ("loader", "device"):
        rates[name], peaks[name] = throughput(args, device, amp_dtype, name, data)

    h, w = args.size
    print("\nsummary")
    print(f"  device:        {device_name(device)}")
    print(f"  dtype:         {precision}, gradient scaler {'on' if scaler else 'off'}")
    print(f"  resume exact:  {'yes' if exact else f'no (largest weight difference {gap:.3g})'}")
    print(f"  evaluate:      val mIoU {miou:.4f} on {frames} sample frame(s) (a check, not a score)")
    print(f"  images/s:      U-Net base {args.base_channels} ({params:.2f} M parameters), {h}x{w}, batch "
          f"{args.batch_size}: DataLoader ({args.workers} workers) {rates['loader']:.4g}, on device "
          f"{rates['device']:.4g} ({rates['device'] / rates['loader']:.2f}x)")  # fmt: skip
    print(f"  peak memory:   DataLoader {peaks['loader']}; on device {peaks['device']}")


if __name__ == "__main__":
    main()
