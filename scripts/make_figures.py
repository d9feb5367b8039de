"""Make the README's result figures from a checkpoint (default: the shipped model).

    python scripts/make_figures.py --data ../shared/camvid/segnet --split val --out docs/figures \
        --history docs/results/training_history.json

Writes ``examples.png`` (frames, ground truth, predictions), ``class_iou.png`` (per-class IoU on
the split, one confusion matrix at native resolution), ``confusion.png`` and ``curves.png`` (the
training history stored in the checkpoint, or the ``--history`` files one after the other).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from camvid_utils.checkpoint import load_model
from camvid_utils.data import CamVid
from camvid_utils.evaluation import evaluate_checkpoint
from camvid_utils.inference import predict
from camvid_utils.locations import find_data_root, shipped_checkpoint
from camvid_utils.runtime import pick_device
from camvid_utils.viz import class_key, colorize, plot_class_iou, plot_confusion, plot_curves


def example_grid(
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], names: list[str], classes, colors
) -> Figure:
    """Return a grid with one frame per row: image, ground truth, prediction; the classes' legend below."""
    height, width = rows[0][0].shape[:2]
    fig = Figure(figsize=(12, 4 * height / width * len(rows) + 1.1), layout="constrained")
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for r, ((image, truth, pred), name) in enumerate(zip(rows, names, strict=True)):
        for c, (picture, title) in enumerate(
            zip((image, truth, pred), ("frame", "ground truth", "prediction"), strict=True)
        ):
            axes[r, c].imshow(picture, interpolation="nearest")
            axes[r, c].set_title(f"{title}: {name}" if c == 0 else title, fontsize=9)
            axes[r, c].set_axis_off()
    key = [Patch(facecolor=np.asarray(c) / 255, edgecolor="black", linewidth=0.5, label=label)
           for label, c in class_key(classes, colors)]  # fmt: skip
    fig.legend(handles=key, loc="outside lower center", ncol=6, frameon=False, fontsize=9)
    return fig


def joined_history(paths: list[str]) -> list[dict]:
    """Return the histories in ``paths`` as one, each run's epochs numbered on from the last's."""
    joined = []
    for path in paths:
        offset = joined[-1]["epoch"] if joined else 0
        joined += [{**h, "epoch": h["epoch"] + offset} for h in json.loads(Path(path).read_text())]
    return joined


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="CamVid folder (default: find_data_root())")
    parser.add_argument("--split", default="val")
    parser.add_argument("--checkpoint", default=str(shipped_checkpoint()))
    parser.add_argument("--out", default="docs/figures")
    parser.add_argument("--examples", type=int, default=3, help="frames in examples.png")
    parser.add_argument(
        "--only-examples", action="store_true", help="write examples.png only (no scoring of the split)"
    )
    parser.add_argument(
        "--history",
        nargs="+",
        help="history.json of the run; several files (a run, then runs started with --init-from) are "
        "drawn one after the other (default: the checkpoint's own history)",
    )
    args = parser.parse_args()

    loaded = load_model(args.checkpoint)
    root = args.data or find_data_root()
    if args.only_examples:
        cm, dataset = None, CamVid(root, args.split, class_set=loaded.class_set)
    else:  # one package function scores the split (as the CLI's evaluate and notebook 04 do)
        result = evaluate_checkpoint(loaded, root, args.split, device=pick_device())
        cm, dataset = result.confusion, result.dataset
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    picks = np.linspace(0, len(dataset) - 1, args.examples).round().astype(int)
    rows, names = [], []
    for i in sorted(set(picks.tolist())):
        image, mask = dataset.load_frame(i)  # (3, H, W) uint8, (H, W) int64
        pred = predict(loaded, image)  # (H, W)
        frame = image.permute(1, 2, 0).numpy()  # (H, W, 3)
        rows.append((frame, colorize(mask, loaded.colors), colorize(pred, loaded.colors)))
        names.append(dataset.frames[i].stem)
    example_grid(rows, names, loaded.classes, loaded.colors).savefig(out / "examples.png", dpi=70)
    if cm is None:
        print(f"wrote examples.png to {out}")
        return
    print(f"{args.checkpoint} on {len(dataset)} {args.split} frames of {dataset.root}:")
    print(cm.table(loaded.classes))
    plot_class_iou(cm.iou().cpu(), loaded.classes, loaded.colors).savefig(out / "class_iou.png", dpi=80)
    plot_confusion(cm.matrix.cpu(), loaded.classes).savefig(out / "confusion.png", dpi=80)
    history = joined_history(args.history) if args.history else loaded.checkpoint["history"]
    plot_curves(history).savefig(out / "curves.png", dpi=80)
    print(f"wrote examples.png, class_iou.png, confusion.png and curves.png to {out}")


if __name__ == "__main__":
    main()
