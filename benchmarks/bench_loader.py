"""Training batches per second at 360x480: the DataLoader path against the preloaded, on-device one.

Both paths feed the training loop what ``training.fit`` feeds it with the gpu preset's augmentation
(short side scaled 0.75-1.5x around 360, random 360x480 crops, flips, colour jitter 0.2, batch 8);
the loop only moves each batch to the device and into channels-last memory, as
``train_one_epoch`` does before the model (there is no model: this times the data path alone).

    DataLoader    ``CamVid`` with ``transforms.train_preset``: two PNGs decoded and the transforms run
                  per sample in ``--workers`` worker processes, a new loader every epoch as in ``fit``
    on device     ``device_augment.preload_split`` once (timed apart), then ``DeviceAugment`` cuts and
                  augments whole batches from the uint8 tensors in memory

An epoch is ``--images`` frames of the split, cycled; the two paths alternate epoch by epoch so that a
busy machine slows them alike, and the median epoch is reported.

    python benchmarks/bench_loader.py                      # data/sample, 3 epochs of 96 images each
    python benchmarks/bench_loader.py --data DIR --images 160 --repeat 5 --workers 4 --device cuda
    python benchmarks/bench_loader.py --quick              # tiny crops, one short epoch (CI)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from camvid_utils.data import CamVid
from camvid_utils.device_augment import DeviceAugment, preload_split
from camvid_utils.locations import sample_root
from camvid_utils.runtime import pick_device
from camvid_utils.transforms import train_preset

REQUIRED_SPEEDUP = 5.0
SCALE, HFLIP, JITTER = (0.75, 1.5), 0.5, 0.2  # the gpu preset's augmentation (training._COMMON)


def feed(batches, device: torch.device) -> tuple[int, float]:
    """Hand every batch to a model-less training loop; return the images seen and the seconds taken."""
    tic, seen = time.perf_counter(), 0
    for images, masks in batches:
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        masks = masks.to(device, non_blocking=True)
        seen += len(images)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen, time.perf_counter() - tic


class DeviceEpoch:
    """One epoch of on-device batches over ``frames`` (indices into the preloaded split, cycled).

    Like ``EpochBatches`` but over any list of frames; it has a length, as a DataLoader does.
    """

    def __init__(self, augment: DeviceAugment, frames: list[int], batch_size: int, epoch: int):
        self.augment, self.frames, self.batch_size, self.epoch = augment, frames, batch_size, epoch

    def __len__(self) -> int:
        return len(self.frames) // self.batch_size

    def __iter__(self):
        generator = self.augment.generator(self.epoch)
        order = torch.tensor(self.frames)[torch.randperm(len(self.frames), generator=generator)]
        b = self.batch_size
        for k in range(len(self)):
            yield self.augment.augment(order[k * b : (k + 1) * b], generator)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=sample_root(), help="CamVid folder (either layout)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--images", type=int, default=96, help="frames per timed epoch (the split, cycled)")
    parser.add_argument("--repeat", type=int, default=3, help="timed epochs per path")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=(360, 480), metavar=("H", "W"))
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="DataLoader workers")
    parser.add_argument("--device", help="where the batches go (default: the best available)")
    parser.add_argument("--quick", action="store_true", help="48x64 crops, one epoch of 8 images (CI)")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.images, args.repeat, args.batch_size = (48, 64), 8, 1, 4
    device = pick_device(args.device)
    size = tuple(args.size)

    transform = train_preset(size, scale=SCALE, hflip=HFLIP, jitter=JITTER)
    dataset = CamVid(args.data, args.split, transform=transform)
    frames = [i % len(dataset) for i in range(args.images)]
    tic = time.perf_counter()
    images, masks = preload_split(dataset, device)
    preload_s = time.perf_counter() - tic
    augment = DeviceAugment(
        images, masks, size, batch_size=args.batch_size, scale=SCALE, hflip=HFLIP, jitter=JITTER
    )
    height, width = images.shape[-2:]
    print(
        f"{len(dataset)} frame(s) of {args.data}/{args.split} ({width}x{height}), cycled to {args.images} "
        f"per epoch; {size[0]}x{size[1]} crops, batch {args.batch_size}, device {device}, "
        f"{torch.get_num_threads()} thread(s), {args.workers} DataLoader worker(s), "
        f"{args.repeat} epoch(s) each"
    )
    print(
        f"preloading the split (once per run): {preload_s:.2f} s, "
        f"{(images.nbytes + masks.nbytes) / 2**20:.0f} MiB of uint8 on {device}"
    )

    rates: dict[str, list[float]] = {"DataLoader": [], "on device": []}
    for epoch in range(args.repeat):
        generator = torch.Generator().manual_seed(epoch)
        loader = DataLoader(
            Subset(dataset, frames),
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=args.workers,
            pin_memory=device.type == "cuda",
            generator=generator,
            drop_last=True,
        )
        seen, seconds = feed(loader, device)
        rates["DataLoader"].append(seen / seconds)
        seen, seconds = feed(DeviceEpoch(augment, frames, args.batch_size, epoch), device)
        rates["on device"].append(seen / seconds)

    median = {name: statistics.median(values) for name, values in rates.items()}
    print(f"\n{'path':12s} {'images/s':>9s}   (every epoch)")
    for name, values in rates.items():
        print(f"{name:12s} {median[name]:9.1f}   ({', '.join(f'{v:.1f}' for v in values)})")
    ratio = median["on device"] / median["DataLoader"]
    verdict = "meets" if ratio >= REQUIRED_SPEEDUP else "MISSES"
    print(
        f"ratio on-device/DataLoader: {ratio:.1f}x ({verdict} the >= {REQUIRED_SPEEDUP:.0f}x requirement "
        f"on {device})"
    )


if __name__ == "__main__":
    main()
