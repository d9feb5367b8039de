"""Inference throughput of a checkpoint at 360x480: fp32 against channels-last and bf16, batch 1 and 8.

The model (default: the shipped ``data/checkpoints/unet_camvid11.pt``, loaded with
``camvid_utils.checkpoint.load_model``) runs in eval mode under ``torch.inference_mode`` on
normalised batches and the argmax is taken, which is what prediction costs once a frame is
decoded. Rows: plain fp32 (contiguous NCHW), fp32 channels-last, and bf16 autocast with
channels-last (on CPUs with native bf16; ``--amp bf16`` forces it). The share of pixels whose
predicted class is the same as fp32's is printed beside each row, so a faster row that predicts
something else shows. Rows are interleaved within each repetition so that a busy machine slows
them alike.

    python benchmarks/bench_infer.py                                # 360x480, batch 1 and 8
    python benchmarks/bench_infer.py --checkpoint runs/unet/best.pt --batch-sizes 1 4 8 --repeat 10
    python benchmarks/bench_infer.py --quick                        # tiny input (CI); figures mean nothing
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch

from camvid_utils.checkpoint import load_model
from camvid_utils.data import CamVid
from camvid_utils.locations import sample_root, shipped_checkpoint
from camvid_utils.model import UNet
from camvid_utils.runtime import autocast_dtype
from camvid_utils.transforms import EvalPreset


@torch.inference_mode()
def predict_batch(model: torch.nn.Module, images: torch.Tensor, amp: torch.dtype | None) -> torch.Tensor:
    """Return the argmax class of every pixel.

    Shape:
        images (B, 3, H, W) normalised -> pred (B, H, W) int64.
    """
    with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
        return model(images).argmax(1)


def real_batch(size: tuple[int, int], batch_size: int, mean, std) -> torch.Tensor:
    """Return ``batch_size`` frames of the bundled sample, resized to ``size`` and normalised.

    Shape:
        (batch_size, 3, *size) float32.
    """
    frames = CamVid(sample_root(), "train", transform=EvalPreset(size, mean=mean, std=std))
    return torch.stack([frames[i % len(frames)][0] for i in range(batch_size)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=shipped_checkpoint())
    parser.add_argument("--size", type=int, nargs=2, default=(360, 480), metavar=("H", "W"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=(1, 8))
    parser.add_argument("--repeat", type=int, default=5, help="timed batches per row")
    parser.add_argument("--amp", choices=("auto", "bf16"), default="auto")
    parser.add_argument("--quick", action="store_true", help="tiny input, one repetition (CI)")
    args = parser.parse_args(argv)
    size = tuple(args.size)

    if args.quick:
        size, args.batch_sizes, args.repeat = (48, 64), (1, 2), 1
    if args.checkpoint.is_file():
        loaded = load_model(args.checkpoint)
        model, mean, std, what = loaded.model, loaded.mean, loaded.std, str(args.checkpoint)
    elif args.quick:  # CI runs before a model is shipped: the timing path is what is under test
        model = UNet(11, base_channels=8).eval()
        mean, std, what = (0.5,) * 3, (0.25,) * 3, "an untrained UNet(11, base 8) (no checkpoint found)"
    else:
        parser.error(f"checkpoint {args.checkpoint} does not exist; pass --checkpoint PATH.")
    bf16 = autocast_dtype(torch.device("cpu"), args.amp)
    rows = {"fp32": (False, None), "channels-last": (True, None)}
    if bf16 is not None:
        rows["bf16 + channels-last"] = (True, bf16)
    print(
        f"{what}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, input "
        f"{size[0]}x{size[1]}, {torch.get_num_threads()} thread(s), {args.repeat} repetition(s)"
    )
    if bf16 is None:
        print("this CPU has no native bf16 (see runtime.autocast_dtype): no bf16 row; --amp bf16 forces it")

    models = {False: model, True: copy.deepcopy(model).to(memory_format=torch.channels_last)}
    for batch_size in args.batch_sizes:
        images = {False: real_batch(size, batch_size, mean, std)}
        images[True] = images[False].contiguous(memory_format=torch.channels_last)
        reference = predict_batch(models[False], images[False], None)
        seconds = {name: [] for name in rows}
        agree = {}
        for name, (channels_last, amp) in rows.items():  # warm-up, and the predictions to compare
            pred = predict_batch(models[channels_last], images[channels_last], amp)
            agree[name] = (pred == reference).float().mean().item()
        for _ in range(args.repeat):
            for name, (channels_last, amp) in rows.items():
                tic = time.perf_counter()
                predict_batch(models[channels_last], images[channels_last], amp)
                seconds[name].append(time.perf_counter() - tic)
        rates = {name: batch_size / statistics.median(s) for name, s in seconds.items()}
        print(f"\nbatch {batch_size}: {'images/s':>9s} {'vs fp32':>8s} {'same pred':>10s}")
        for name, rate in rates.items():
            print(f"  {name:20s} {rate:9.2f} {rate / rates['fp32']:7.2f}x {100 * agree[name]:9.2f}%")
        best = max(rates, key=rates.get)
        print(f"ratio best/fp32 at batch {batch_size}: {rates[best] / rates['fp32']:.2f}x ({best})")


if __name__ == "__main__":
    main()
