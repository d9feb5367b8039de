"""Inference throughput of the exported ONNX model in onnxruntime (CPU) against PyTorch fp32 and bf16.

The checkpoint (default: the shipped ``data/checkpoints/unet_camvid11.pt``) is exported with
``camvid_utils.export.export_onnx`` into a temporary folder, then three rows run on the same
normalised frames of the bundled sample in the same process: the package's PyTorch inference in
fp32, its bf16 path (bf16 autocast with channels-last, as ``bench_infer.py``; forced with bf16 even
on CPUs without native bf16, where it is slow), and onnxruntime's CPU provider with as many threads
as PyTorch uses. The argmax is taken in every row; the share of pixels whose class is the same as
PyTorch fp32's is printed beside each row. Rows are interleaved within each repetition so that a
busy machine slows them alike. Needs the ``export`` extra (``pip install -e .[export]``).

    python benchmarks/bench_onnx.py                                 # 360x480, batch 1 and 4
    python benchmarks/bench_onnx.py --checkpoint runs/unet/best.pt --batch-sizes 1 8 --repeat 10
    python benchmarks/bench_onnx.py --quick                         # tiny input (CI); figures mean nothing
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_infer import predict_batch, real_batch  # this folder: the same rows as bench_infer's

from camvid_utils.checkpoint import load_model
from camvid_utils.export import MissingExtra, export_onnx, onnx_logits, onnx_session
from camvid_utils.locations import shipped_checkpoint


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=shipped_checkpoint())
    parser.add_argument("--size", type=int, nargs=2, default=(360, 480), metavar=("H", "W"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=(1, 4))
    parser.add_argument("--repeat", type=int, default=5, help="timed batches per row")
    parser.add_argument("--quick", action="store_true", help="tiny input, one repetition (CI)")
    args = parser.parse_args(argv)
    size = tuple(args.size)
    if args.quick:
        size, args.batch_sizes, args.repeat = (48, 64), (1, 2), 1
    if not args.checkpoint.is_file():
        parser.error(f"checkpoint {args.checkpoint} does not exist; pass --checkpoint PATH.")

    loaded = load_model(args.checkpoint)
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            export_onnx(args.checkpoint, Path(tmp) / "model.onnx", check=False)
        except MissingExtra as err:
            parser.exit(2, f"error: {err}\n")
        session = onnx_session(Path(tmp) / "model.onnx", threads=threads)
    models = {
        "PyTorch fp32": (loaded.model, False, None),
        "PyTorch bf16": (
            copy.deepcopy(loaded.model).to(memory_format=torch.channels_last),
            True,
            torch.bfloat16,
        ),
    }
    print(
        f"{args.checkpoint}: {sum(p.numel() for p in loaded.model.parameters()) / 1e6:.2f} M parameters, "
        f"input {size[0]}x{size[1]}, {threads} thread(s) for PyTorch and onnxruntime, "
        f"{args.repeat} repetition(s)"
    )

    def run(name: str, images: dict) -> torch.Tensor:
        if name == "onnxruntime":
            return torch.from_numpy(onnx_logits(session, images[False]).argmax(1))
        model, channels_last, amp = models[name]
        return predict_batch(model, images[channels_last], amp)

    rows = (*models, "onnxruntime")
    for batch_size in args.batch_sizes:
        images = {False: real_batch(size, batch_size, loaded.mean, loaded.std)}
        images[True] = images[False].contiguous(memory_format=torch.channels_last)
        reference = run("PyTorch fp32", images)
        agree = {name: (run(name, images) == reference).float().mean().item() for name in rows}  # warm-up
        seconds = {name: [] for name in rows}
        for _ in range(args.repeat):
            for name in rows:
                tic = time.perf_counter()
                run(name, images)
                seconds[name].append(time.perf_counter() - tic)
        rates = {name: batch_size / statistics.median(s) for name, s in seconds.items()}
        print(f"\nbatch {batch_size}: {'images/s':>9s} {'vs fp32':>8s} {'same pred':>10s}")
        for name, rate in rates.items():
            print(f"  {name:14s} {rate:9.2f} {rate / rates['PyTorch fp32']:7.2f}x {100 * agree[name]:9.2f}%")
        print(
            f"ratio onnxruntime/fp32 at batch {batch_size}: "
            f"{rates['onnxruntime'] / rates['PyTorch fp32']:.2f}x; "
            f"onnxruntime/bf16: {rates['onnxruntime'] / rates['PyTorch bf16']:.2f}x"
        )


if __name__ == "__main__":
    main()
