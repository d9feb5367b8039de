"""Command line: ``python -m camvid_utils {train,evaluate,predict,download} ...``.

A thin layer: it fills a ``TrainConfig`` or calls the package's functions, and turns the package's
errors into one clear line on stderr (exit status 2) instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .checkpoint import CheckpointError, load_model
from .data import CLASS_SETS, CamVidError
from .inference import predict
from .training import TrainConfig, evaluate_checkpoint, fit
from .viz import colorize, overlay


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``camvid_utils`` command."""
    parser = argparse.ArgumentParser(prog="python -m camvid_utils", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a U-Net with focal loss")
    train.add_argument("--data", required=True, help="CamVid folder (Kaggle or SegNet layout)")
    train.add_argument("--class-set", choices=CLASS_SETS, help="default: the layout's own classes")
    train.add_argument(
        "--preset",
        choices=("seed", "cpu-fast", "gpu"),
        default="seed",
        help="starting configuration (default: the seed project's setup)",
    )
    train.add_argument("--epochs", type=_positive_int)
    train.add_argument("--batch-size", type=_positive_int)
    train.add_argument("--lr", type=_positive_float)
    train.add_argument(
        "--image-size",
        type=_positive_int,
        nargs=2,
        metavar=("H", "W"),
        help="size the model sees frames at (evaluation still scores at full size)",
    )
    train.add_argument(
        "--crop-size",
        type=_positive_int,
        nargs=2,
        metavar=("H", "W"),
        help="random training crops of the resized frame (default: no crop)",
    )
    train.add_argument("--base-channels", type=_positive_int)
    train.add_argument(
        "--class-weights",
        choices=("none", "inverse_sqrt", "median_frequency"),
        help="per-class focal-loss alpha from training pixel counts (presets: inverse_sqrt)",
    )
    train.add_argument(
        "--init-from",
        metavar="CHECKPOINT",
        help="start from these weights with a fresh optimiser and schedule (fine-tuning)",
    )
    train.add_argument("--workers", type=int, help="DataLoader worker processes")
    train.add_argument("--eval-every", type=_positive_int, help="validate every N epochs (default 1)")
    train.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    train.add_argument("--out", default="runs/unet", help="folder for checkpoints and history.json")
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    train.add_argument("--seed", type=int)

    ev = sub.add_parser("evaluate", help="score a checkpoint on a split at full resolution")
    ev.add_argument("--data", required=True)
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--split", default="test", choices=("train", "val", "test"))
    ev.add_argument("--json", help="also write the scores to this JSON file")
    ev.add_argument("--batch-size", type=_positive_int, default=4)
    ev.add_argument("--device")

    pr = sub.add_parser("predict", help="write colour-coded masks and overlays for images")
    pr.add_argument("--checkpoint", required=True)
    pr.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    pr.add_argument("--out", required=True, help="folder for <stem>_mask.png and <stem>_overlay.png")
    pr.add_argument("--alpha", type=float, default=0.5, help="overlay opacity in [0, 1]")
    pr.add_argument("--device")

    dl = sub.add_parser("download", help="fetch the SegNet tutorial's 11-class CamVid copy")
    dl.add_argument(
        "--dest",
        help="folder to put CamVid in (default: data/camvid in the repository, where the notebooks look)",
    )
    dl.add_argument(
        "--url", help="archive URL, or file:///path.zip offline (default: the SegNet tutorial repository)"
    )
    dl.add_argument(
        "--sha256", help="expected SHA-256 of the archive (a branch archive has none that is stable)"
    )
    return parser


def _train(args) -> None:
    presets = {"seed": TrainConfig, "cpu-fast": TrainConfig.cpu_fast, "gpu": TrainConfig.gpu}
    cfg = presets[args.preset](data=args.data) if args.preset != "seed" else TrainConfig(data=args.data)
    chosen = {
        "class_set": args.class_set,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "image_size": args.image_size and tuple(args.image_size),
        "crop_size": args.crop_size and tuple(args.crop_size),
        "base_channels": args.base_channels,
        "num_workers": args.workers,
        "eval_every": args.eval_every,
        "device": args.device,
        "seed": args.seed,
        "init_from": args.init_from,
        "out": args.out,
    }
    cfg = replace(cfg, **{k: v for k, v in chosen.items() if v is not None})
    if args.class_weights is not None:
        cfg = replace(cfg, alpha=None if args.class_weights == "none" else args.class_weights)
    history = fit(cfg, resume=args.resume)
    best = max((h["val_miou"] for h in history if h["val_miou"] is not None), default=float("nan"))
    print(f"done: best val mIoU {best:.4f}; checkpoints in {cfg.out}")


def _evaluate(args) -> None:
    loaded = load_model(args.checkpoint, device=args.device)
    result = evaluate_checkpoint(
        loaded, args.data, args.split, device=args.device, batch_size=args.batch_size
    )
    cm, dataset = result["confusion"], result["dataset"]
    print(f"{args.checkpoint} on {len(dataset)} {args.split} frames of {args.data}:")
    print(cm.table(dataset.classes))
    if args.json:
        ious = cm.iou().tolist()
        scores = {
            "miou": cm.miou(),
            "pixel_accuracy": cm.pixel_accuracy(),
            "class_accuracy": cm.class_accuracy(),
            "per_class_iou": {
                name: None if v != v else v for name, v in zip(dataset.classes, ious, strict=True)
            },
            "num_images": len(dataset),
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(scores, indent=2))
        print(f"wrote {args.json}")


def _image_files(inputs: list[str]) -> list[Path]:
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
            if not found:
                raise CamVidError(f"{item} holds no .png or .jpg images.")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise CamVidError(f"{item} does not exist; pass image files or folders of images.")
    return files


def _predict(args) -> None:
    if not 0 <= args.alpha <= 1:
        raise CamVidError(f"--alpha must be in [0, 1], got {args.alpha}.")
    loaded = load_model(args.checkpoint, device=args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in _image_files(args.inputs):
        try:
            with Image.open(path) as img:
                frame = np.array(img.convert("RGB"))
        except (OSError, SyntaxError) as err:
            raise CamVidError(f"cannot read image {path}: {err}") from None
        image = torch.from_numpy(frame).permute(2, 0, 1).contiguous()  # (3, H, W) uint8
        pred = predict(loaded, image)
        mask_rgb = colorize(pred, loaded.colors)
        Image.fromarray(mask_rgb).save(out / f"{path.stem}_mask.png")
        Image.fromarray(overlay(frame, mask_rgb, args.alpha)).save(out / f"{path.stem}_overlay.png")
        shares = torch.bincount(pred.flatten(), minlength=len(loaded.classes)) / pred.numel()
        top = ", ".join(
            f"{loaded.classes[i]} {100 * shares[i]:.0f}%" for i in shares.argsort(descending=True)[:3]
        )
        print(f"{path} -> {out / (path.stem + '_mask.png')} ({top})")


def _download(args) -> None:
    from .download import download_segnet

    download_segnet(args.dest, sha256=args.sha256, **({"url": args.url} if args.url else {}))


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    commands = {"train": _train, "evaluate": _evaluate, "predict": _predict, "download": _download}
    try:
        commands[args.command](args)
    except (CamVidError, CheckpointError, FloatingPointError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume training with --resume", file=sys.stderr)
        return 130
    return 0
