"""Training and inference speed of the U-Net on Lite0 against the course's U-Net, on the CPU, as ratios.

Both models are the ones the course ships: the course's U-Net at base width 24 (4.37 M parameters)
and the U-Net on EfficientNet-Lite0 at base 16 (5.20 M). Weights do not change the speed, so both
start from seeded random weights. Rows run interleaved within each repetition, so that a busy machine
slows them alike, and each rate is the median of the repetitions after one warm-up:

- training: one AdamW step with focal loss on a batch of 8 random 240x320 crops (the cpu-fast
  recipe's), channels-last, in fp32 and under bf16 autocast (on CPUs without native bf16 the bf16
  rows are slow; the package's ``--amp auto`` does not pick it there);
- inference at 360x480, batch 1: PyTorch fp32, PyTorch bf16 + channels-last, and onnxruntime's CPU
  provider on the exported model (the ``export`` extra), with as many threads as PyTorch.

    python benchmarks/bench_transfer.py
    python benchmarks/bench_transfer.py --quick      # tiny inputs (tests); figures mean nothing
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch
from bench_infer import predict_batch  # this folder

from camvid_utils.export import MissingExtra, export_onnx, onnx_logits, onnx_session
from camvid_utils.losses import FocalLoss
from camvid_utils.model import EncoderUNet, UNet, count_parameters
from camvid_utils.runtime import cpu_name

MODELS = {"course U-Net": lambda: UNet(11, base_channels=24), "Lite0 U-Net": lambda: EncoderUNet(11, "lite0")}


def train_step(model, optimizer, images, masks, amp) -> None:
    """One training step: forward (under autocast when ``amp``), focal loss, backward, AdamW."""
    with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
        logits = model(images)
    loss = FocalLoss()(logits.float(), masks)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def timed(rows: dict, repeat: int, images_per_call: int) -> dict:
    """Return each row's images per second: the median over ``repeat`` interleaved calls, after a warm-up."""
    for call in rows.values():
        call()
    seconds = {name: [] for name in rows}
    for _ in range(repeat):
        for name, call in rows.items():
            tic = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - tic)
    return {name: images_per_call / statistics.median(s) for name, s in seconds.items()}


def checkpoint_of(model, path: Path) -> Path:
    """Save ``model`` as a minimal camvid_utils checkpoint (what ``export_onnx`` reads)."""
    torch.save(
        {
            "model": model.state_dict(),
            "model_config": asdict(model.config),
            "classes": [f"c{i}" for i in range(11)],
            "colors": [[i, i, i] for i in range(11)],
            "mean": [0.5, 0.5, 0.5],
            "std": [0.25, 0.25, 0.25],
            "image_size": [360, 480],
        },
        path,
    )
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per row")
    parser.add_argument("--quick", action="store_true", help="tiny inputs, one repetition (tests)")
    args = parser.parse_args(argv)
    crop, size, batch = ((64, 64), (64, 96), 2) if args.quick else ((240, 320), (360, 480), 8)
    repeat = 1 if args.quick else args.repeat
    torch.manual_seed(0)
    models = {name: make().to(memory_format=torch.channels_last) for name, make in MODELS.items()}
    threads = torch.get_num_threads()
    print(f"{cpu_name()}, {threads} thread(s); {repeat} repetition(s) after a warm-up")
    for name, model in models.items():
        print(f"  {name}: {count_parameters(model) / 1e6:.2f} M parameters")

    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, *crop, generator=gen).contiguous(memory_format=torch.channels_last)
    masks = torch.randint(0, 11, (batch, *crop), generator=gen)
    steps = {}
    for name, model in models.items():
        for amp in (None, torch.bfloat16):
            net = copy.deepcopy(model).train()
            opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
            label = f"{name} {'bf16' if amp else 'fp32'}"
            steps[label] = lambda net=net, opt=opt, amp=amp: train_step(net, opt, images, masks, amp)
    train = timed(steps, repeat, batch)
    print(f"\ntraining, batch {batch} of {crop[0]}x{crop[1]} crops: images/s")
    for label, rate in train.items():
        print(f"  {label:22s} {rate:7.2f}")
    for amp in ("fp32", "bf16"):
        ratio = train[f"Lite0 U-Net {amp}"] / train[f"course U-Net {amp}"]
        print(f"ratio Lite0/course U-Net, training {amp}: {ratio:.2f}x")
    fastest = {name: max(train[f"{name} fp32"], train[f"{name} bf16"]) for name in models}
    print(f"ratio Lite0/course U-Net, training, each in its faster precision: "
          f"{fastest['Lite0 U-Net'] / fastest['course U-Net']:.2f}x")  # fmt: skip

    frame = torch.randn(1, 3, *size, generator=gen)
    calls = {}
    sessions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            model = model.eval().to(memory_format=torch.contiguous_format)
            cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
            frame_cl = frame.contiguous(memory_format=torch.channels_last)
            calls[f"{name} PyTorch fp32"] = lambda m=model: predict_batch(m, frame, None)
            calls[f"{name} PyTorch bf16"] = lambda m=cl, x=frame_cl: predict_batch(m, x, torch.bfloat16)
            try:
                path = Path(tmp) / f"{len(sessions)}.onnx"
                export_onnx(checkpoint_of(model, Path(tmp) / "m.pt"), path, check=False, overwrite=True)
                sessions[name] = onnx_session(path, threads=threads)
                calls[f"{name} onnxruntime"] = lambda s=sessions[name]: onnx_logits(s, frame).argmax(1)
            except MissingExtra as err:
                print(f"(no onnxruntime rows: {err})")
        with torch.no_grad():
            infer = timed(calls, repeat, 1)
    print(f"\ninference at {size[0]}x{size[1]}, batch 1: images/s")
    for label, rate in infer.items():
        print(f"  {label:28s} {rate:7.2f}")
    for path in ("PyTorch fp32", "PyTorch bf16", "onnxruntime"):
        if f"Lite0 U-Net {path}" in infer:
            ratio = infer[f"Lite0 U-Net {path}"] / infer[f"course U-Net {path}"]
            print(f"ratio Lite0/course U-Net, inference {path}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
