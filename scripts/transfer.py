"""What an ImageNet encoder buys: the course's U-Net from scratch, a U-Net on Lite0 from random weights,
and the same U-Net on Lite0 from ImageNet's, each trained at one fixed budget with several seeds.

    python scripts/transfer.py --data /path/to/camvid --out transfer_runs --seeds 0 1 2

Every arm trains with the ``cpu-fast`` recipe (AdamW with one-cycle, scale, crop, flips, jitter,
inverse-sqrt class weights, batch 8, 240x320 crops of 360x480 frames) for ``--epochs`` epochs, each
into its own run folder (``OUT/<arm>/seed<N>``), and is scored on the whole val split at the labels'
resolution. ``OUT/transfer.json`` holds, per run, the val mIoU, every class's IoU, the parameters and
the mean seconds per epoch on the CPU named beside it. Run it again with the same arguments to go on:
a finished run is skipped and a killed one resumes (``scripts/ablation.py``'s ``train_row``); a later
command with other seeds adds its runs to the same JSON.

``--quick`` trains every arm for seconds on the bundled sample (for the tests).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation import earlier_runs, score_row, train_row, write_json  # noqa: E402

from camvid_utils.checkpoint import load_checkpoint  # noqa: E402
from camvid_utils.config import TrainConfig  # noqa: E402
from camvid_utils.locations import sample_root  # noqa: E402
from camvid_utils.model import build_model, count_parameters  # noqa: E402
from camvid_utils.runtime import cpu_name  # noqa: E402

# Each arm's settings on top of the shared budget (``budget_config``).
ARMS = {
    "unet_scratch": ({"encoder": None, "base_channels": 24}, "course U-Net (base 24), from scratch"),
    "lite0_random": (
        {"encoder": "lite0", "base_channels": 16, "pretrained": False},
        "U-Net on Lite0 (base 16), random weights",
    ),
    "lite0_imagenet": (
        {"encoder": "lite0", "base_channels": 16, "pretrained": True},
        "U-Net on Lite0 (base 16), ImageNet weights",
    ),
}


def budget_config(args) -> TrainConfig:
    """Return what every arm shares: the cpu-fast recipe at the comparison's budget."""
    if args.quick:
        return TrainConfig.cpu_fast(
            str(args.data),
            class_set="camvid11",
            epochs=2,
            batch_size=2,
            image_size=(64, 64),
            crop_size=(64, 64),
            num_workers=0,
            max_eval_images=2,
            eval_every=2,
        )
    return TrainConfig.cpu_fast(
        str(args.data),
        class_set=args.class_set,
        epochs=args.epochs,
        eval_every=args.epochs,  # scored once, at the end: the budget goes to training
        num_workers=args.workers,
        device=args.device,
    )


def arm_config(name: str, base: TrainConfig, seed: int, out: Path) -> TrainConfig:
    """Return arm ``name``'s config for ``seed``, its run folder inside ``out``."""
    return replace(base, **ARMS[name][0], seed=seed, out=str(out / name / f"seed{seed}"))


def summarise(results: list[dict]) -> list[dict]:
    """Return one entry per arm: mean val mIoU and thin-class IoU over its seeds, the lowest and highest
    seed, its parameters and mean seconds per epoch."""
    by_arm = {}
    for r in results:
        by_arm.setdefault(r["row"], []).append(r)
    return [
        {
            "arm": name,
            "seeds": sorted(r["seed"] for r in runs),
            "val_miou": statistics.fmean(r["val_miou"] for r in runs),
            "low": min(r["val_miou"] for r in runs),
            "high": max(r["val_miou"] for r in runs),
            "thin_iou": statistics.fmean(statistics.fmean(r["thin_iou"].values()) for r in runs),
            "parameters": runs[0]["parameters"],
            "seconds_per_epoch": statistics.fmean(r["seconds_per_epoch"] for r in runs),
        }
        for name in ARMS
        if (runs := by_arm.get(name))
    ]


def summary_table(results: list[dict]) -> str:
    """Return the summary as a Markdown table."""
    lines = [
        "| arm | seeds | mean val mIoU | lowest-highest seed | mean thin-class IoU | parameters | s/epoch |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in summarise(results):
        lines.append(
            f"| {ARMS[s['arm']][1]} | {', '.join(map(str, s['seeds']))} | {s['val_miou']:.3f} | "
            f"{s['low']:.3f}-{s['high']:.3f} | {s['thin_iou']:.3f} | {s['parameters'] / 1e6:.2f} M | "
            f"{s['seconds_per_epoch']:.0f} |"
        )
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--data", type=Path, help="CamVid folder with train and val (default with --quick: the sample)"
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the run folders and transfer.json")
    p.add_argument("--class-set", choices=("camvid11", "camvid32"), default="camvid11")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--arms", nargs="+", choices=tuple(ARMS), help="a subset of the arms (default: all)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers per run (default 1)")
    p.add_argument("--device", help="cpu, cuda, ... (default: the best available)")
    p.add_argument("--quick", action="store_true", help="seconds-long runs on the bundled sample")
    args = p.parse_args(argv)
    if args.data is None:
        if not args.quick:
            p.error("--data is required (the folder holding CamVid's train and val splits)")
        args.data = sample_root()
    return args


def budget(cfg: TrainConfig) -> dict:
    """Return what every arm shares: the budget and the data."""
    keys = ("data", "class_set", "epochs", "batch_size", "image_size", "crop_size", "lr", "amp")
    return {k: getattr(cfg, k) for k in keys} | {"recipe": "cpu-fast", "eval": "whole val split at the end"}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    base = budget_config(args)
    jobs = [(arm, seed) for seed in args.seeds for arm in args.arms or ARMS]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "transfer.json"
    results = [r for r in earlier_runs(path, budget(base), set()) if (r["row"], r["seed"]) not in set(jobs)]
    for arm, seed in tqdm(jobs, desc="transfer", unit="run"):
        cfg = arm_config(arm, base, seed, args.out)
        history = train_row(cfg, log=tqdm.write)
        model = build_model(load_checkpoint(Path(cfg.out) / "last.pt")["model_config"])
        results.append(
            {
                "row": arm,
                "seed": seed,
                "label": ARMS[arm][1],
                "out": cfg.out,
                "parameters": count_parameters(model),
                "seconds_per_epoch": statistics.fmean(h["seconds"] for h in history),
                "cpu": f"{cpu_name()}, {torch.get_num_threads()} thread(s)",
                **score_row(cfg, history),
            }
        )
        results.sort(key=lambda r: (list(ARMS).index(r["row"]), r["seed"]))
        write_json({"budget": budget(base), "rows": results}, path)
    print(summary_table(results))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
