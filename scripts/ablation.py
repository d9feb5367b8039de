"""What each ingredient of the training recipe buys: the seed setup, then one ingredient at a time.

One command trains every row of the table with the package's own ``fit``, each into its own run
folder (``OUT/<row>/seed<N>``, with ``last.pt`` after every epoch), and writes ``OUT/ablation.json``:

    python scripts/ablation.py --data /path/to/camvid --out ablation_runs

Run it again with the same arguments to go on: a finished row is skipped, a killed row resumes from
its ``last.pt`` (``fit(..., resume=True)``, which refuses a row whose settings changed), so the
table is the same as an uninterrupted run's. Every row trains for the same budget (``--epochs``,
``--image-size``, ``--base-channels``; batch 8; evaluation of the whole val split after every epoch)
and is scored on the val split at the labels' resolution. Per row the JSON holds the final val mIoU,
the thin classes' IoU, the seed, and the noise between consecutive validations: the standard
deviation and the range (max - min) of val mIoU over the last ``NOISE_EPOCHS`` epochs, so that a
difference between two rows smaller than that is not a finding. Run rows with several ``--seeds``
where their differences are small: the summary table gives each row's mean over its seeds and the
range between them. A later command into the same ``--out`` adds its runs to ``ablation.json``
(a run of the same row and seed is replaced), and each run records the CPU it trained on.

``--quick`` trains every row for seconds on the bundled sample and then checks, from each run's
saved config, that each row differs from the row it builds on only in the settings it names.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from camvid_utils.checkpoint import load_model, load_training_checkpoint
from camvid_utils.config import TrainConfig
from camvid_utils.evaluation import evaluate_checkpoint
from camvid_utils.locations import sample_root
from camvid_utils.runtime import cpu_name
from camvid_utils.training import fit

THIN = ("Pole", "SignSymbol", "Pedestrian", "Bicyclist", "Fence")
NOISE_EPOCHS = 3


@dataclass(frozen=True)
class Row:
    """One row of the table: ``changes`` applied to the config of row ``parent`` (None: the base)."""

    name: str
    parent: str | None
    changes: dict
    label: str


# The seed project's setup is TrainConfig's defaults (SGD at lr 5e-4, no schedule, no augmentation,
# no class weights, focal gamma 2); each later row adds one ingredient to the row it names.
ROWS = (
    Row("seed", None, {}, "seed setup: SGD lr 5e-4, constant, no augmentation, no class weights, gamma 2"),
    Row(
        "adamw_onecycle",
        "seed",
        {"optimizer": "adamw", "lr": 2e-3, "schedule": "onecycle"},
        "+ AdamW lr 2e-3 with one-cycle",
    ),
    Row(
        "scale_crop_flip",
        "adamw_onecycle",
        {"scale": (0.75, 1.5), "hflip": 0.5},
        "+ scale 0.75-1.5, crop, flips",
    ),
    Row("weights_inverse_sqrt", "scale_crop_flip", {"alpha": "inverse_sqrt"}, "+ class weights inverse sqrt"),
    Row(
        "weights_median_frequency",
        "scale_crop_flip",
        {"alpha": "median_frequency"},
        "  class weights median frequency (instead)",
    ),
    Row("gamma0", "weights_inverse_sqrt", {"gamma": 0.0}, "  gamma 0 = cross-entropy (instead of 2)"),
    Row("width2x", "weights_inverse_sqrt", None, "+ twice the width"),
    # the same steps as adamw_onecycle (an average changes no step); scored with the average
    Row(
        "ema",
        "adamw_onecycle",
        {"ema": 0.99},
        "  AdamW + one-cycle, scored with an EMA of the weights (0.99)",
    ),
)
BY_NAME = {row.name: row for row in ROWS}


def budget_config(args) -> TrainConfig:
    """Return the base row's config: the seed setup at the table's budget."""
    if args.quick:
        return TrainConfig(
            data=str(args.data),
            class_set="camvid11",
            epochs=2,
            batch_size=2,
            image_size=(48, 64),
            base_channels=4,
            depth=2,
            num_workers=0,
            amp="off",
            max_eval_images=2,
            seed=0,
        )
    return TrainConfig(
        data=str(args.data),
        class_set=args.class_set,
        epochs=args.epochs,
        batch_size=8,
        image_size=tuple(args.image_size),
        base_channels=args.base_channels,
        num_workers=args.workers,
        amp="off",
        device=args.device,
    )


def row_changes(row: Row, base: TrainConfig) -> dict:
    """Return the settings ``row`` changes (the width row doubles the base's width)."""
    return {"base_channels": 2 * base.base_channels} if row.changes is None else row.changes


def row_config(name: str, base: TrainConfig, seed: int, out: Path) -> TrainConfig:
    """Return the full config of row ``name`` for ``seed``, its run folder inside ``out``."""
    row = BY_NAME[name]
    cfg = base if row.parent is None else row_config(row.parent, base, seed, out)
    return replace(cfg, **row_changes(row, base), seed=seed, out=str(out / name / f"seed{seed}"))


def noise(history: list[dict], last: int = NOISE_EPOCHS) -> dict:
    """Return the std and range (max - min) of val mIoU over the ``last`` validated epochs."""
    values = [h["val_miou"] for h in history if h["val_miou"] is not None][-last:]
    return {
        "epochs": len(values),
        "std": statistics.pstdev(values) if values else math.nan,
        "range": max(values) - min(values) if values else math.nan,
    }


def train_row(cfg: TrainConfig, log=print) -> list[dict]:
    """Train (or resume, or skip) one row's run; return its history."""
    last = Path(cfg.out) / "last.pt"
    if last.is_file():
        ckpt = load_training_checkpoint(last)
        if ckpt["epoch"] + 1 >= cfg.epochs:
            return list(ckpt["history"])
        return fit(cfg, resume=True, log=log)
    # a folder without last.pt holds nothing this script needs (killed before its first epoch)
    return fit(cfg, overwrite=True, log=log)


def score_row(cfg: TrainConfig, history: list[dict]) -> dict:
    """Score the row's final weights on val: mIoU, every class's IoU, the noise of its last epochs."""
    loaded = load_model(Path(cfg.out) / "last.pt", device=cfg.device or "cpu")
    result = evaluate_checkpoint(loaded, cfg.data, "val", max_images=cfg.max_eval_images, batch_size=4)
    cm, classes = result.confusion, result.dataset.classes
    iou = dict(zip(classes, cm.iou().tolist(), strict=True))
    return {
        "val_miou": cm.miou(),
        "thin_iou": {name: iou[name] for name in THIN if name in iou},
        "class_iou": iou,
        "val_miou_per_epoch": [h["val_miou"] for h in history],
        "noise_last_epochs": noise(history),
        "epochs": len(history),
    }


def check_rows(results: list[dict], base: TrainConfig) -> list[str]:
    """Return the rows whose saved config differs from their parent's in more than what they name."""
    saved = {
        (r["row"], r["seed"]): load_training_checkpoint(Path(r["out"]) / "last.pt")["train_config"]
        for r in results
    }
    problems = []
    for r in results:
        row = BY_NAME[r["row"]]
        if row.parent is None or (row.parent, r["seed"]) not in saved:
            continue
        mine, theirs = saved[(row.name, r["seed"])], saved[(row.parent, r["seed"])]
        differ = {k for k in mine if k != "out" and mine[k] != theirs[k]}
        named = set(row_changes(row, base))
        if differ != named:
            problems.append(
                f"{row.name}: differs from {row.parent} in {sorted(differ)}, names {sorted(named)}"
            )
    return problems


ORDER = {row.name: index for index, row in enumerate(ROWS)}


def earlier_runs(path: Path, shared: dict, jobs: set) -> list[dict]:
    """Return the runs an earlier command wrote to ``path`` with the same budget, but those in ``jobs``."""
    if not path.is_file():
        return []
    earlier = json.loads(path.read_text())
    if earlier.get("budget") != json.loads(json.dumps(shared, default=list)):
        raise SystemExit(
            f"{path} holds runs of another budget ({earlier.get('budget')}): pass another --out."
        )
    return [r for r in earlier["rows"] if (r["row"], r["seed"]) not in jobs]


def summarise(results: list[dict]) -> list[dict]:
    """Return one entry per row, in the table's order: the mean val mIoU and thin-class IoU over
    the row's seeds, the lowest and highest seed's val mIoU, and the seeds."""
    rows = {}
    for r in sorted(results, key=lambda r: (ORDER[r["row"]], r["seed"])):
        rows.setdefault(r["row"], []).append(r)
    return [
        {
            "row": name,
            "seeds": [r["seed"] for r in runs],
            "val_miou": statistics.fmean(r["val_miou"] for r in runs),
            "low": min(r["val_miou"] for r in runs),
            "high": max(r["val_miou"] for r in runs),
            "thin_iou": {n: statistics.fmean(r["thin_iou"].get(n, math.nan) for r in runs) for n in THIN},
        }
        for name, runs in rows.items()
    ]


def summary_table(results: list[dict]) -> str:
    """Return each row's mean over its seeds, and the range between seeds, as a Markdown table."""
    head = "| row | seeds | mean val mIoU | lowest-highest seed | " + " | ".join(THIN) + " |"
    lines = [head, "|" + " --- |" * (4 + len(THIN))]
    for s in summarise(results):
        thin = " | ".join(f"{s['thin_iou'][n]:.3f}" for n in THIN)
        spread = f"{s['low']:.3f}-{s['high']:.3f}" if len(s["seeds"]) > 1 else "one seed"
        seeds = ", ".join(map(str, s["seeds"]))
        lines.append(
            f"| {BY_NAME[s['row']].label.strip()} | {seeds} | {s['val_miou']:.3f} | {spread} | {thin} |"
        )
    return "\n".join(lines)


def table(results: list[dict]) -> str:
    """Return the results as a Markdown table."""
    head = "| row | seed | val mIoU | noise (range, last 3) | " + " | ".join(THIN) + " |"
    lines = [head, "|" + " --- |" * (4 + len(THIN))]
    for r in results:
        thin = " | ".join(f"{r['thin_iou'].get(n, math.nan):.3f}" for n in THIN)
        lines.append(
            f"| {BY_NAME[r['row']].label.strip()} | {r['seed']} | {r['val_miou']:.3f} | "
            f"{r['noise_last_epochs']['range']:.3f} | {thin} |"
        )
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--data", type=Path, help="CamVid folder with train and val (default with --quick: the sample)"
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the run folders and ablation.json")
    p.add_argument("--class-set", choices=("camvid11", "camvid32"), default="camvid11")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--image-size", type=int, nargs=2, default=(120, 160), metavar=("H", "W"))
    p.add_argument("--base-channels", type=int, default=16, help="the width of every row but the last")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--rows", nargs="+", choices=tuple(BY_NAME), help="a subset of the rows (default: all)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers per run (default 0)")
    p.add_argument("--device", help="cpu, cuda, ... (default: the best available)")
    p.add_argument(
        "--quick", action="store_true", help="seconds-long rows on the bundled sample, then checks"
    )
    args = p.parse_args(argv)
    if args.data is None:
        if not args.quick:
            p.error("--data is required (the folder holding CamVid's train and val splits)")
        args.data = sample_root()
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    base = budget_config(args)
    names = args.rows or [row.name for row in ROWS]
    jobs = [(name, seed) for seed in args.seeds for name in names]
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    results = earlier_runs(out / "ablation.json", budget(base), set(jobs))
    bar = tqdm(jobs, desc="ablation", unit="row")
    for name, seed in bar:
        bar.set_postfix(row=name, seed=seed)
        cfg = row_config(name, base, seed, out)
        history = train_row(cfg, log=tqdm.write)
        results.append(
            {
                "row": name,
                "seed": seed,
                "label": BY_NAME[name].label.strip(),
                "out": cfg.out,
                "changes": {k: v for k, v in row_changes(BY_NAME[name], base).items()},
                "cpu": f"{cpu_name()}, {torch.get_num_threads()} thread(s)",
                **score_row(cfg, history),
            }
        )
        results.sort(key=lambda r: (ORDER[r["row"]], r["seed"]))
        write_json({"budget": budget(base), "rows": results}, out / "ablation.json")
    print(table(results))
    print()
    print(summary_table(results))
    print(f"wrote {out / 'ablation.json'}")
    if args.quick:
        problems = check_rows(results, base)
        for line in problems:
            print("CHECK FAILED:", line, file=sys.stderr)
        if problems:
            return 1
        print(f"checked: each of {len(results)} rows differs from its parent only in the settings it names")
    return 0


def budget(cfg: TrainConfig) -> dict:
    """Return what every row shares: the budget and the data."""
    keys = ("data", "class_set", "epochs", "batch_size", "image_size", "crop_size", "base_channels", "amp")
    return {k: getattr(cfg, k) for k in keys} | {"eval": "whole val split after every epoch"}


def write_json(obj, path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=list))
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
