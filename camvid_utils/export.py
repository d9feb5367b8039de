"""ONNX export: a checkpoint as one ``.onnx`` file that onnxruntime runs without torch or this package.

The graph takes a normalised batch ``image`` (B, 3, H, W) float32 and returns ``logits``
(B, C, H, W); batch, height and width are all dynamic. What a user needs around it travels in the
model's metadata (``metadata_props``), every value JSON-encoded: ``classes``, ``colors`` (one RGB
triple per class), ``mean`` and ``std`` (normalisation: ``(pixel / 255 - mean) / std``),
``image_size`` (the (H, W) the model was trained at, the size to resize frames to), ``class_set``,
``ignore_index`` and ``source`` (the checkpoint's file name).

Why the TorchScript exporter and an odd example size: ``Up`` pads its up-sampled map only when a
size was floored on the way down (``if dh or dw``). ``torch.export`` would specialise that branch to
the example's sizes, and a tracer records the branch it took. Traced with an example whose height
and width are odd at every level (``2**depth * k - 1``), every ``Up`` records its ``F.pad`` with
amounts computed from the input's shape inside the graph, which are zero for even sizes: one graph
right for every size (``check_parity`` and the tests check even, odd and batch 2).

``onnx`` and ``onnxruntime`` are the optional extra ``export``: ``pip install -e .[export]``.
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .checkpoint import LoadedModel, load_model

EXTRA = "pip install -e .[export]"  # or, without a clone: pip install onnx onnxruntime
OPSET = 17
MIN_OPSET = 11  # Pad with sizes computed at run time (the skips of odd-sized inputs) arrived in opset 11
INPUT, OUTPUT = "image", "logits"
# onnxruntime against PyTorch, both fp32 on the CPU: the same arithmetic in another order. Measured
# on the shipped model at 360x480: max |difference| about 1e-5 on logits up to about 13.
LOGIT_ATOL = 1e-3
LOGIT_RTOL = 1e-3
MIN_AGREEMENT = 0.999  # share of pixels whose argmax class must be the same


class MissingExtra(ImportError):
    """Raised when ``onnx`` or ``onnxruntime`` is not installed; the message names the extra."""


def require_onnx():
    """Return the ``(onnx, onnxruntime)`` modules, or raise ``MissingExtra`` saying what to install."""
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise MissingExtra(
            f"ONNX export needs the optional packages onnx and onnxruntime ({err.name} is missing): "
            f"{EXTRA} (or pip install onnx onnxruntime)."
        ) from None
    return onnx, onnxruntime


def onnx_metadata(loaded: LoadedModel, source: str | os.PathLike = "") -> dict[str, str]:
    """Return the metadata stored in the exported model: each value JSON-encoded."""
    ckpt = loaded.checkpoint
    values = {
        "classes": list(loaded.classes),
        "colors": [list(c) for c in loaded.colors],
        "mean": list(loaded.mean),
        "std": list(loaded.std),
        "image_size": list(loaded.image_size),
        "class_set": loaded.class_set,
        "ignore_index": ckpt.get("ignore_index", 255),
        "source": Path(source).name,
    }
    return {key: json.dumps(value) for key, value in values.items()}


def read_metadata(path: str | os.PathLike) -> dict:
    """Return the decoded metadata of an exported model (``classes``, ``colors``, ``mean``, ...)."""
    onnx, _ = require_onnx()
    model = onnx.load(str(path), load_external_data=False)
    return {prop.key: json.loads(prop.value) for prop in model.metadata_props}


def trace_size(depth: int) -> tuple[int, int]:
    """Return an example (H, W) that is odd at every level of a U-Net of ``depth`` (see above)."""
    return 2**depth * 4 - 1, 2**depth * 5 - 1


def export_onnx(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    opset: int = OPSET,
    check: bool = True,
    overwrite: bool = False,
) -> dict:
    """Write the checkpoint's model as ONNX to ``out`` with its metadata; return what was checked.

    With ``check``, onnxruntime runs the written file on a random batch of 2 at an odd size and its
    logits are compared with PyTorch's (``check_parity``); a mismatch raises ``ValueError``. The file
    is written beside ``out`` and renamed into place only once it passed, so a failed export leaves
    nothing behind; an existing ``out`` is replaced only with ``overwrite``.
    Returns ``{"path", "opset", "metadata", "parity"}`` (``parity`` is None without ``check``).
    """
    onnx, _ = require_onnx()
    if opset < MIN_OPSET:
        raise ValueError(
            f"opset {opset} cannot express this U-Net: its skip connections pad by sizes known only at "
            f"run time, which ONNX's Pad takes from opset {MIN_OPSET}; pass --opset {OPSET} (the default)."
        )
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; pass the file to write, such as {out / 'model.onnx'}.")
    if out.exists() and not overwrite:
        raise ValueError(f"{out} already exists; pass --overwrite to replace it, or another --out.")
    loaded = load_model(checkpoint)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(
            f"cannot make the folder {out.parent}: {err.strerror or err}; pass another --out."
        ) from None
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        parity = _write_checked(onnx, loaded, checkpoint, tmp, opset, check)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return {"path": out, "opset": opset, "metadata": read_metadata(out), "parity": parity}


def _write_checked(onnx, loaded, checkpoint, path: Path, opset: int, check: bool) -> dict | None:
    """Export ``loaded.model`` to ``path`` with its metadata; with ``check``, raise unless it matches."""
    example = torch.zeros(1, 3, *trace_size(loaded.model.config.depth))
    dynamic = {0: "batch", 2: "height", 3: "width"}
    options = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with warnings.catch_warnings():
        # the tracer's notes on the `if dh or dw` branch (intended, see the module docstring) and the
        # TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                loaded.model,
                (example,),
                str(path),
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_axes={INPUT: dynamic, OUTPUT: dynamic},
                opset_version=opset,
                do_constant_folding=True,
                **options,
            )
        except RuntimeError as err:
            if "opset_version" not in str(err):
                raise
            raise ValueError(
                f"opset {opset} is one this torch ({torch.__version__}) cannot export to "
                f"({str(err).splitlines()[0]}); pass --opset {OPSET} (the default)."
            ) from None
    model = onnx.load(str(path))
    for key, value in onnx_metadata(loaded, checkpoint).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    if not check:
        return None
    h, w = trace_size(loaded.model.config.depth)
    images = torch.randn(2, 3, h + 2, w + 4, generator=torch.Generator().manual_seed(0))
    parity = check_parity(path, loaded, images)
    if not parity["ok"]:
        raise ValueError(
            f"onnxruntime disagrees with PyTorch (max |logit difference| {parity['max_abs_diff']:.3g}, "
            f"argmax agreement {100 * parity['agreement']:.3f}%); not usable, so not written."
        )
    return parity


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """Return an onnxruntime CPU session for ``path`` (``threads``: intra-op threads, default its own)."""
    _, ort = require_onnx()
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_logits(session, images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Return onnxruntime's logits for a normalised batch.

    Shape:
        images (B, 3, H, W) float32 -> logits (B, C, H, W) float32.
    """
    x = images.numpy() if isinstance(images, torch.Tensor) else images
    return session.run([OUTPUT], {INPUT: np.ascontiguousarray(x, dtype=np.float32)})[0]


@torch.no_grad()
def check_parity(
    onnx_path: str | os.PathLike,
    loaded: LoadedModel,
    images: torch.Tensor,
    *,
    atol: float = LOGIT_ATOL,
    rtol: float = LOGIT_RTOL,
    min_agreement: float = MIN_AGREEMENT,
) -> dict:
    """Compare onnxruntime's logits with the PyTorch model's on the same normalised batch.

    Returns ``{"max_abs_diff", "within_tolerance", "agreement", "ok"}``: ``within_tolerance`` when
    every logit is within ``atol + rtol * |PyTorch's|``, ``agreement`` the share of pixels with the
    same argmax class, ``ok`` when both hold (agreement at least ``min_agreement``).

    Shape:
        images (B, 3, H, W) float32, normalised as the model was trained.
    """
    model = loaded.model
    reference = model(images.to(next(model.parameters()).device)).float().cpu().numpy()
    theirs = onnx_logits(onnx_session(onnx_path), images.cpu())
    if theirs.shape != reference.shape:
        raise ValueError(f"{onnx_path} returned logits {theirs.shape}, PyTorch {reference.shape}.")
    diff = np.abs(theirs - reference)
    within = bool((diff <= atol + rtol * np.abs(reference)).all())
    agreement = float((theirs.argmax(1) == reference.argmax(1)).mean())
    return {
        "max_abs_diff": float(diff.max()),
        "within_tolerance": within,
        "agreement": agreement,
        "ok": within and agreement >= min_agreement,
    }
