"""Test-time augmentation: val mIoU and cost of plain, flip and multi-scale prediction, in one run.

    python benchmarks/bench_tta.py --data /path/to/camvid [--checkpoint CKPT] [--split val] [--json F]

Scores one checkpoint (default: the shipped model) on a whole split with each ``--tta`` mode of
``evaluate``, one confusion matrix per mode at the labels' resolution, and prints each mode's mIoU,
the thin classes' IoU and its time as a ratio to the plain pass measured in the same run.
``--quick`` scores two frames of the bundled sample, to check that the script runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from camvid_utils.checkpoint import load_model
from camvid_utils.evaluation import evaluate_checkpoint
from camvid_utils.inference import MULTISCALE, TTA_MODES
from camvid_utils.locations import sample_root, shipped_checkpoint
from camvid_utils.runtime import cpu_name

THIN = ("Pole", "SignSymbol", "Pedestrian", "Bicyclist", "Fence")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path)
    p.add_argument("--checkpoint", type=Path)
    p.add_argument("--split", default="val")
    p.add_argument("--max-images", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--device")
    p.add_argument("--json", type=Path)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.data, args.max_images = args.data or sample_root(), 2
    if args.data is None:
        p.error("--data is required (a CamVid folder holding the split)")
    path = args.checkpoint or shipped_checkpoint()
    loaded = load_model(path, device=args.device or "cpu")
    # one unmeasured frame first: the first call's set-up would otherwise count against "none"
    evaluate_checkpoint(loaded, args.data, args.split, device=args.device, max_images=1, tta="none")
    rows = {}
    for mode in TTA_MODES:
        tic = time.perf_counter()
        result = evaluate_checkpoint(
            loaded, args.data, args.split, device=args.device, max_images=args.max_images, tta=mode
        )
        seconds = time.perf_counter() - tic
        cm, classes = result.confusion, result.dataset.classes
        iou = dict(zip(classes, cm.iou().tolist(), strict=True))
        rows[mode] = {
            "miou": cm.miou(),
            "thin_iou": {n: iou[n] for n in THIN if n in iou},
            "seconds": seconds,
            "images": result.num_images,
        }
    plain = rows["none"]["seconds"]
    print(f"{path} on {rows['none']['images']} {args.split} frames of {args.data}; {cpu_name()}, "
          f"{torch.get_num_threads()} thread(s); multiscale scales {MULTISCALE} with flips")  # fmt: skip
    print(f"{'tta':<11} {'mIoU':>6} {'cost':>6}  " + " ".join(f"{n:>10}" for n in THIN))
    for mode, r in rows.items():
        r["cost_ratio"] = r["seconds"] / plain
        thin = " ".join(f"{r['thin_iou'].get(n, float('nan')):>10.3f}" for n in THIN)
        print(f"{mode:<11} {r['miou']:>6.3f} {r['cost_ratio']:>5.2f}x  {thin}")
    if args.json:
        summary = {"checkpoint": str(path), "data": str(args.data), "split": args.split, "cpu": cpu_name(),
                   "threads": torch.get_num_threads(), "scales": MULTISCALE, "modes": rows}  # fmt: skip
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
