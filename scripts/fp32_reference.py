"""Write the confusion matrices a float32 checkpoint gives on the bundled sample's val and test frames.

The shipped models store fp16 weights; ``tests/test_transfer.py`` checks that the shipped Lite0 U-Net
scores on the sample as its float32 weights did, against the file this writes:

    python scripts/fp32_reference.py runs/lite0/best.pt docs/results/lite0_fp32_sample.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from camvid_utils.checkpoint import load_model
from camvid_utils.evaluation import evaluate_checkpoint
from camvid_utils.locations import sample_root


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path, help="the float32 checkpoint (a run's best.pt)")
    parser.add_argument("out", type=Path, help="the JSON file to write")
    args = parser.parse_args(argv)
    loaded = load_model(args.checkpoint)
    scores = {}
    for split in ("val", "test"):
        cm = evaluate_checkpoint(loaded, sample_root(), split).confusion
        scores[split] = {"miou": cm.miou(), "confusion": cm.matrix.tolist()}
    args.out.write_text(json.dumps({"checkpoint": str(args.checkpoint), **scores}, indent=1))
    print(f"wrote {args.out}: " + ", ".join(f"{s} mIoU {v['miou']:.4f}" for s, v in scores.items()))


if __name__ == "__main__":
    main()
