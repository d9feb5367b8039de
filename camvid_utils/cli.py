"""Command line: ``python -m camvid_utils {train,evaluate,predict,download,export,check-data} ...``.

A thin layer: it fills a ``TrainConfig`` or calls the package's functions, and turns the package's
errors into one clear line on stderr (exit status 2) instead of a traceback.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

from . import distributed
from .check import check_data
from .checkpoint import CheckpointError, load_model
from .config import (
    PRESETS,
    RESUMABLE,
    TrainConfig,
    add_arguments,
    flag,
    given_settings,
    has_flag,
    train_command,
)
from .config import device_name as _device
from .config import positive_float as _positive_float
from .config import positive_int as _positive_int
from .data import UNREADABLE, CamVid, CamVidError, to_rgb, unreadable
from .evaluation import evaluate_checkpoint
from .inference import TTA_MODES, output_paths, predict, prediction_names, top_classes, write_prediction
from .runtime import pick_device
from .training import TrainingDiverged, fit, saved_config
from .video import DEFAULT_FPS, WRITE_SUFFIXES, check_fps, is_video, open_clip, predict_frames, write_video
from .viz import draw_view

_TTA_HELP = (
    "flip: average the softmax of each frame and its mirror image (twice the compute); multiscale: of the "
    "frame and its mirror at 0.75, 1 and 1.25 times the model's input size, averaged at the label's "
    "resolution (about 6 times the compute); default none"
)

_EPOCHS, _LR, _OUT, _INIT = flag("epochs"), flag("lr"), flag("out"), flag("init_from")
_TRAIN_EPILOG = f"""\
--resume continues the run saved in OUT/last.pt exactly as it was set up. It may change only
{", ".join(flag(k) for k in RESUMABLE if has_flag(k))}; any other setting given with a value that
differs from the saved one is refused. {_EPOCHS} on resume extends (or shortens) a constant or poly
schedule, which then decays over the new total; a one-cycle schedule cannot be stretched, so for
one-cycle runs {_EPOCHS} must stay as saved. To train on with other settings (a lower {_LR}, more
one-cycle epochs), start a new cycle from the run's weights: {_INIT} OUT/last.pt {_OUT} NEW_FOLDER.
Without --resume, an {_OUT} that holds files is refused unless --overwrite is given.
"""


def check_device(requested: str | None) -> torch.device:
    """Return the device to run on (``requested``, else the best available); raise if it is not here."""
    device = pick_device(requested)  # refuses CUDA where there is none
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(
            f"device {requested!r} was asked for but this machine has {torch.cuda.device_count()} "
            "CUDA device(s); pass --device cuda (or cuda:0)."
        )
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ValueError(f"device {requested!r} was asked for but Apple MPS is not available here.")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {requested!r} is not supported; pass cpu, cuda, cuda:N or mps.")
    return device


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``camvid_utils`` command."""
    parser = argparse.ArgumentParser(prog="python -m camvid_utils", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train",
        help="train a U-Net with focal loss",
        epilog=_TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        help="starting configuration (default: the seed project's setup; on --resume: the saved run's)",
    )
    add_arguments(train)  # one option per setting of TrainConfig that has a flag
    train.add_argument("--resume", action="store_true", help="continue the run in OUT/last.pt (see below)")
    train.add_argument("--overwrite", action="store_true", help="replace the run already in OUT")

    ev = sub.add_parser("evaluate", help="score a checkpoint on a split at full resolution")
    ev.add_argument("--data", required=True)
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--split", default="test", choices=("train", "val", "test"))
    ev.add_argument("--json", help="also write the scores to this JSON file")
    ev.add_argument("--overwrite", action="store_true", help="replace the --json file if it exists")
    ev.add_argument("--batch-size", type=_positive_int, default=4)
    ev.add_argument("--tta", choices=TTA_MODES, default="none", help=_TTA_HELP)
    ev.add_argument("--device", type=_device, help="cuda, cuda:N, mps or cpu (default: the best available)")

    pr = sub.add_parser(
        "predict",
        help="write colour-coded masks and overlays for images",
        description="Write <name>_mask.png and <name>_overlay.png for every image. Outputs mirror the "
        "inputs' folders below the folder they share (a single folder's images land directly in "
        "OUT); images of one folder that share a name (x.jpg, x.png) get their suffix in the output "
        "name (x_jpg_mask.png). Unreadable images are reported and skipped; the exit status is 1 if any was.",
    )
    pr.add_argument("--checkpoint", required=True)
    pr.add_argument(
        "inputs", nargs="*", metavar="IMAGE_OR_DIR", help="images, or folders searched recursively"
    )
    pr.add_argument("--data", help="predict the images of one split of this dataset folder (with --split)")
    pr.add_argument(
        "--split", default="val", choices=("train", "val", "test"), help="with --data (default val)"
    )
    pr.add_argument("--out", help="folder for <name>_mask.png and <name>_overlay.png (optional with --video)")
    pr.add_argument("--alpha", type=float, default=0.5, help="overlay opacity in [0, 1]")
    pr.add_argument(
        "--video",
        metavar="OUT",
        help="write the overlay video of one video file or folder of frames to OUT (.mp4 or .gif)",
    )
    pr.add_argument(
        "--fps",
        type=_positive_float,
        help=f"frame rate of --video (default: the input video's; {DEFAULT_FPS:g} for a folder of frames)",
    )
    pr.add_argument(
        "--overwrite",
        action="store_true",
        help="replace masks, overlays or a --video that already exist (never an input)",
    )
    pr.add_argument("--tta", choices=TTA_MODES, default="none", help=_TTA_HELP)
    pr.add_argument(
        "--batch-size", type=_positive_int, default=4, help="frames of a video predicted at once (default 4)"
    )
    pr.add_argument("--device", type=_device, help="cuda, cuda:N, mps or cpu (default: the best available)")

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

    ex = sub.add_parser(
        "export",
        help="write a checkpoint as ONNX for onnxruntime (needs pip install -e .[export])",
        description="Write the checkpoint's U-Net as ONNX: dynamic batch, height and width, with the "
        "classes, colours, normalisation and training size as metadata; onnxruntime then checks it "
        "against PyTorch on an odd-sized batch of 2.",
    )
    ex.add_argument("--checkpoint", required=True)
    ex.add_argument("--out", required=True, help="the .onnx file to write")
    ex.add_argument("--opset", type=_positive_int, default=17, help="ONNX opset, 11 or newer (default 17)")
    ex.add_argument("--overwrite", action="store_true", help="replace --out if it exists")

    cd = sub.add_parser(
        "check-data",
        help="report on a dataset folder of your own before training (exit 1 on problems)",
        description="Check a folder of images/, masks/ and classes.csv (see docs/own-data.md): pairs, sizes, "
        "mask format, classes per split, void, class weights, near-copy frames across splits.",
    )
    cd.add_argument("root", metavar="DIR", help="the dataset folder")
    cd.add_argument(
        "--no-leak-check", action="store_true", help="skip the near-copy search (it reads every image)"
    )
    return parser


def _diverged_advice(err: TrainingDiverged, cfg: TrainConfig) -> str:
    lower = err.lr / 10
    again = replace(
        cfg,
        lr=lower,
        init_from=str(err.best) if err.best is not None else cfg.init_from,
        out=f"{cfg.out.rstrip('/')}-lr{lower:g}",
    )
    command = train_command(again)
    return f" Run: {command}" if command else ""


def _train(args) -> None:
    if args.resume and args.overwrite:
        raise ValueError(
            f"--resume continues the run in {flag('out')} and --overwrite replaces it: pass one."
        )
    chosen = given_settings(args)
    if args.resume and args.preset is None:
        cfg = saved_config(args.out)  # the run as saved; fit refuses any setting it may not change
    else:
        cfg = PRESETS[args.preset or "seed"](data=args.data)
    cfg = replace(cfg, **chosen)
    try:
        device = check_device(cfg.device)
    except ValueError:
        if not (args.resume and args.device is None):
            raise
        raise ValueError(
            f"the run in {args.out} was saved with {flag('device')} {cfg.device}, which this machine does "
            f"not have; resume it here with {flag('device')} cpu (or a device this machine has)."
        ) from None
    with distributed.process_group(device) as group:  # under torchrun: one of N
        say = distributed.main_only(print)
        if group:
            per_process = cfg.batch_size / distributed.get_world_size()
            say(f"{group}; global batch {cfg.batch_size}: {per_process:g} frame(s) on each process")
        try:
            history = fit(cfg, resume=args.resume, overwrite=args.overwrite)
        except TrainingDiverged as err:
            raise TrainingDiverged(
                str(err) + _diverged_advice(err, cfg), epoch=err.epoch, best=err.best, lr=err.lr
            ) from None
        best = max((h["val_miou"] for h in history if h["val_miou"] is not None), default=float("nan"))
        say(f"done: best val mIoU {best:.4f}; checkpoints in {cfg.out}")


def check_json(path: str | None) -> None:
    """Raise unless ``--json PATH`` can be written, so that a bad path is caught before scoring."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--json {path} is a folder; pass a file to write, such as {path / 'scores.json'}.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as err:
        raise OSError(
            f"cannot write --json {path}: {err.strerror or err}; pass a file you can write."
        ) from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(targets, inputs, *, flag: str, overwrite: bool) -> None:
    """Raise before any work when a command would write over one of its inputs, or over a file that
    already exists (unless ``overwrite``), or two of its outputs onto one file.

    ``targets`` are the files the command writes, ``inputs`` the files and folders it reads; a target
    inside an input folder is allowed (predict skips its own outputs there), a target that is an input
    never, not even with ``--overwrite``.
    """
    targets, inputs = [Path(t) for t in targets], [Path(i) for i in inputs]
    for target in targets:
        for item in inputs:
            if _same_file(target, item) or target.resolve() == item.resolve():
                raise ValueError(
                    f"{flag} {target} is one of the inputs ({item}); writing there would destroy it. "
                    f"Pass another {flag}."
                )
    seen = {}
    for target in targets:
        key = str(target.resolve()).lower()
        if key in seen:
            raise ValueError(
                f"{seen[key]} and {target} would be written to the same file; pass another {flag}."
            )
        seen[key] = target
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        shown = ", ".join(map(str, existing[:3])) + (
            f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        )
        raise ValueError(
            f"{shown} already exist{'s' if len(existing) == 1 else ''}; nothing was written. Pass another "
            f"{flag}, or --overwrite to replace {'it' if len(existing) == 1 else 'them'}."
        )


def _evaluate(args) -> None:
    check_json(args.json)
    if args.json:
        check_outputs([args.json], [args.checkpoint, args.data], flag="--json", overwrite=args.overwrite)
    device = check_device(args.device)
    loaded = load_model(args.checkpoint, device=device)
    result = evaluate_checkpoint(
        loaded, args.data, args.split, device=device, batch_size=args.batch_size, tta=args.tta
    )
    cm, dataset = result.confusion, result.dataset
    print(
        f"{args.checkpoint} on {len(dataset)} {args.split} frames of {args.data} ({device}, TTA: {args.tta}):"
    )
    print(cm.table(dataset.classes))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(result.to_json())
        print(f"wrote {args.json}")


def _predict(args) -> int:
    if not 0 <= args.alpha <= 1:
        raise CamVidError(f"--alpha must be in [0, 1], got {args.alpha}.")
    device = check_device(args.device)
    if args.video or any(is_video(item) for item in args.inputs):
        return _predict_clip(args, device)
    if args.out is None:
        raise ValueError(
            "predict needs --out FOLDER for images (or --video OUT for a video or a folder of frames)."
        )
    if args.data:
        args.inputs = [*args.inputs, *map(str, CamVid(args.data, args.split).frames)]
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder; pass a folder for the masks and overlays.")
    targets = prediction_names(args.inputs, args.out)
    written = [path for _, name in targets for path in output_paths(out, name)]
    check_outputs(written, [path for path, _ in targets], flag="--out", overwrite=args.overwrite)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(
            f"cannot make --out {out}: {err.strerror or err}; pass a folder you can write to."
        ) from None
    loaded = load_model(args.checkpoint, device=device)
    failed = []
    for path, name in targets:
        try:
            with Image.open(path) as img:
                frame = to_rgb(img, path)  # (H, W, 3) uint8
        except UNREADABLE as err:
            print(f"skipped {path}: {unreadable(path, err)}", file=sys.stderr)
            failed.append(path)
            continue
        image = torch.from_numpy(frame).permute(2, 0, 1).contiguous()  # (3, H, W) uint8
        pred = predict(loaded, image, tta=args.tta)  # (H, W)
        write_prediction(out, name, frame, pred, loaded.colors, args.alpha)
        top = ", ".join(f"{label} {100 * share:.0f}%" for label, share in top_classes(pred, loaded.classes))
        print(f"{path} -> {output_paths(out, name)[0]} ({top})")
    if failed:
        listed = ", ".join(map(str, failed[:5])) + (" ..." if len(failed) > 5 else "")
        print(
            f"error: {len(failed)} of {len(targets)} images could not be read ({listed}); the other "
            f"{len(targets) - len(failed)} were written to {out}.",
            file=sys.stderr,
        )
        return 1
    return 0


def _predict_clip(args, device: torch.device) -> int:
    """Predict every frame of one video file or folder of frames, in batches; write frames and/or a video."""
    if len(args.inputs) != 1:
        raise ValueError(
            f"a video is read from one video file or folder of frames, got {len(args.inputs)} inputs."
        )
    if args.out is None and args.video is None:
        raise ValueError(
            "pass --out FOLDER for each frame's mask and overlay, --video OUT for the video, or both."
        )
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(
            f"--out {args.out} is a file, not a folder; pass a folder for the masks and overlays."
        )
    if args.video and Path(args.video).is_dir():
        raise ValueError(
            f"--video {args.video} is a folder; pass the video file to write, such as a .mp4 in it."
        )
    if args.video and Path(args.video).suffix.lower() not in WRITE_SUFFIXES:
        raise ValueError(f"--video {args.video}: the video must end in .mp4 or .gif.")
    if args.video:
        check_outputs([args.video], [args.inputs[0]], flag="--video", overwrite=args.overwrite)
    clip = open_clip(args.inputs[0])
    if args.out:
        frames = [path for name in clip.names for path in output_paths(args.out, name)]
        check_outputs(frames, [args.inputs[0]], flag="--out", overwrite=args.overwrite)
    fps = args.fps or clip.fps or DEFAULT_FPS
    if args.video:
        check_fps(args.video, fps)
    loaded = load_model(args.checkpoint, device=device)
    shown, fed = itertools.tee(iter(clip))  # the frames, read once: drawn and predicted
    preds = predict_frames(loaded, fed, batch_size=args.batch_size, tta=args.tta)
    names = iter(clip.names) if args.out else None
    counted = tqdm(zip(shown, preds, strict=True), total=len(clip), desc="predicting", unit="frame")

    def overlays():
        for frame, pred in counted:
            if names is not None:
                yield write_prediction(args.out, next(names), frame, pred, loaded.colors, args.alpha)
            else:
                yield draw_view(frame, pred, loaded.colors, alpha=args.alpha)

    if args.video:
        count = write_video(args.video, overlays(), fps=fps)
        print(f"{args.inputs[0]} -> {args.video} ({count} frames at {fps:g} fps, TTA: {args.tta})")
    else:
        count = sum(1 for _ in overlays())
    if args.out:
        print(f"wrote the masks and overlays of {count} frames to {args.out}")
    return 0


def _check_data(args) -> int:
    report = check_data(args.root, leak_check=not args.no_leak_check)
    print(report)
    return 0 if report.ok else 1


def _download(args) -> None:
    from .download import download_segnet

    download_segnet(args.dest, sha256=args.sha256, **({"url": args.url} if args.url else {}))


def _export(args) -> int:
    from .export import MissingExtra, export_onnx

    try:
        result = export_onnx(args.checkpoint, args.out, opset=args.opset, overwrite=args.overwrite)
    except MissingExtra as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    meta, parity = result["metadata"], result["parity"]
    print(
        f"wrote {result['path']} (opset {result['opset']}, {len(meta['classes'])} classes, trained at "
        f"{meta['image_size'][0]}x{meta['image_size'][1]}); onnxruntime matches PyTorch: max |logit "
        f"difference| {parity['max_abs_diff']:.2g}, same class on {100 * parity['agreement']:.2f}% of pixels"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "predict" and not args.inputs and not args.data:
        parser.error("predict needs images or folders (IMAGE_OR_DIR), or --data DIR (with --split)")
    commands = {
        "train": _train,
        "evaluate": _evaluate,
        "predict": _predict,
        "download": _download,
        "export": _export,
        "check-data": _check_data,
    }
    try:
        return commands[args.command](args) or 0
    except (CamVidError, CheckpointError, FloatingPointError, OSError, ValueError) as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; {_interrupted(args)}", file=sys.stderr)
        return 130


def _interrupted(args) -> str:
    """Say what an interrupted command left and how to go on."""
    if args.command != "train":
        return _INTERRUPTED[args.command]
    if not (Path(args.out) / "last.pt").is_file():
        return "no epoch had finished, so no checkpoint was saved; run the command again to start."
    where = [flag("data"), args.data, flag("out"), args.out]
    again = ["python", "-m", "camvid_utils", "train", *where, "--resume"]
    return f"the epochs finished so far are saved in {args.out}; continue with: {shlex.join(again)}"


_INTERRUPTED = {
    "evaluate": "nothing was written; run the command again to score",
    "predict": "the images done so far are in --out; run the command again for the rest",
    "download": "the next run removes the partial files and finishes the job",
    "export": "--out is unchanged (the file is written beside it, then renamed); run the command again",
}


def one_line(err: BaseException) -> str:
    """Return the message of ``err``; for an error re-raised from a DataLoader worker, the original one.

    PyTorch re-raises a worker's exception with the worker's whole traceback as its message; the
    last line holds the error the same file gives without workers (``--workers 0``).
    """
    text = str(err)
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.splitlines() if line.strip()][-1]
    name, sep, message = last.partition(": ")
    return message if sep and name.split(".")[-1] == type(err).__name__ else last
