"""ONNX export: metadata, parity with PyTorch on real frames, the docs' snippet run as written.

Needs the ``export`` extra (onnx, onnxruntime). Outside CI these tests skip, naming it, when it is
missing; in CI (``CI=true``, which installs requirements.txt) a missing extra fails them.
"""

import io
import math
import os
import re
import subprocess
import sys
from contextlib import redirect_stdout
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from camvid_utils import encoders, export
from camvid_utils.checkpoint import load_model
from camvid_utils.cli import main
from camvid_utils.data import CamVid
from camvid_utils.encoders import input_statistics
from camvid_utils.locations import shipped_checkpoint
from camvid_utils.model import EncoderUNet, UNet
from camvid_utils.transforms import EvalPreset
from camvid_utils.viz import colorize
from conftest import REPO, SAMPLE

IN_CI = os.environ.get("CI", "").strip().lower() == "true"


def onnx_or_skip(in_ci: bool):
    """Return ``(onnx, onnxruntime)``; skip naming the extra when they are missing, fail in CI."""
    try:
        return export.require_onnx()
    except export.MissingExtra as err:
        if in_ci:
            pytest.fail(f"CI installs requirements.txt, so the ONNX tests must run: {err}")
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def onnx_modules():
    return onnx_or_skip(IN_CI)


@pytest.fixture(scope="module")
def exported(onnx_modules, tmp_path_factory):
    """The shipped model exported by the command line: (path, what it printed, the PyTorch model)."""
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    printed = io.StringIO()
    with redirect_stdout(printed):
        status = main(["export", "--checkpoint", str(shipped_checkpoint()), "--out", str(out)])
    assert status == 0
    return out, printed.getvalue(), load_model(shipped_checkpoint())


def test_the_command_writes_dynamic_axes_and_the_metadata_inference_needs(exported, onnx_modules):
    path, printed, loaded = exported
    assert re.search(r"wrote .*model\.onnx \(opset 17, 11 classes, trained at 360x480\)", printed)
    assert re.search(r"same class on 100\.00% of pixels", printed), printed
    meta = export.read_metadata(path)
    assert meta["classes"] == list(loaded.classes) and meta["classes"][3] == "Road"
    assert meta["colors"] == [list(c) for c in loaded.colors]
    assert meta["mean"] == list(loaded.mean) and meta["std"] == list(loaded.std)
    assert meta["image_size"] == [360, 480] and meta["class_set"] == "camvid11"
    assert meta["ignore_index"] == 255 and meta["source"] == "unet_camvid11.pt"
    graph = onnx_modules[0].load(str(path)).graph
    for value, channels in ((graph.input[0], 3), (graph.output[0], 11)):
        dims = value.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", "", "height", "width"], value.name
        assert dims[1].dim_value == channels


PARITY_CASES = [
    pytest.param((360, 480), 1, id="360x480"),
    pytest.param((245, 333), 1, id="245x333, not multiples of 16"),
    pytest.param((360, 480), 2, id="batch 2", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("size", "batch"), PARITY_CASES)
def test_onnxruntime_matches_pytorch_on_real_frames(exported, size, batch):
    path, _, loaded = exported
    frames = CamVid(SAMPLE, "val", transform=EvalPreset(size, mean=loaded.mean, std=loaded.std))
    images = torch.stack([frames[i][0] for i in range(batch)])  # (B, 3, H, W)
    with torch.no_grad():
        ours = loaded.model(images)  # (B, 11, H, W)
    theirs = torch.from_numpy(export.onnx_logits(export.onnx_session(path), images))
    assert theirs.shape == (batch, 11, *size)
    torch.testing.assert_close(theirs, ours, atol=export.LOGIT_ATOL, rtol=export.LOGIT_RTOL)
    agreement = (theirs.argmax(1) == ours.argmax(1)).float().mean().item()
    assert agreement >= export.MIN_AGREEMENT
    assert ours.abs().max() > 1  # real logits, not a degenerate all-zero case that trivially matches


def docs_snippet() -> str:
    """Return the python block of the "Export to ONNX" page (docs/onnx.md)."""
    text = (REPO / "docs" / "onnx.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1, "docs/onnx.md must hold exactly one python block"
    return blocks[0]


def test_the_docs_snippet_runs_as_written_without_torch(exported, tmp_path):
    path, _, loaded = exported
    snippet = docs_snippet()
    assert 8 <= len([line for line in snippet.splitlines() if line.strip()]) <= 15  # about ten lines
    (tmp_path / "model.onnx").write_bytes(path.read_bytes())
    frames = CamVid(SAMPLE, "val")
    (tmp_path / "frame.png").write_bytes(frames.frames[1].read_bytes())
    (tmp_path / "snippet.py").write_text(snippet)
    # torch and camvid_utils cannot be imported: the snippet needs only onnxruntime, numpy and Pillow
    blocked = "import sys; sys.modules['torch'] = sys.modules['camvid_utils'] = None; "
    run = subprocess.run(
        [sys.executable, "-c", blocked + "exec(compile(open('snippet.py').read(), 'docs/onnx.md', 'exec'))"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "'Road':" in run.stdout
    mask = np.asarray(Image.open(tmp_path / "frame_mask.png"))  # (360, 480, 3) colours
    assert mask.shape == (360, 480, 3)
    palette = {tuple(c) for c in loaded.colors}
    assert {tuple(c) for c in np.unique(mask.reshape(-1, 3), axis=0)} <= palette
    image, _ = frames.load_frame(1)  # (3, 720, 960) uint8
    with torch.no_grad():
        pred = loaded.model(EvalPreset(loaded.image_size)(image)[None]).argmax(1)[0]  # (360, 480)
    same = (mask == colorize(pred, loaded.colors)).all(-1).mean()
    assert same >= export.MIN_AGREEMENT


def test_an_existing_file_is_kept_unless_overwrite_is_given(onnx_modules, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    argv = ["export", "--checkpoint", str(_tiny_checkpoint(tmp_path / "t.pt")), "--out", str(notes)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "already exists" in err and "--overwrite" in err
    assert notes.read_text() == "keep me"
    assert main([*argv, "--overwrite"]) == 0
    assert onnx_modules[0].load(str(notes)).graph.input[0].name == "image"


@pytest.mark.parametrize("opset", [9, 99])
def test_an_opset_that_cannot_export_the_model_is_one_line_that_names_a_working_one(
    onnx_modules, tmp_path, capsys, opset
):
    ckpt = _tiny_checkpoint(tmp_path / "t.pt", depth=2)
    argv = ["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "m.onnx"), "--opset", str(opset)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: opset {opset} ") and err.count("\n") == 1 and "--opset 17" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.pt"]


def test_a_missing_extra_is_named_by_the_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if neither were installed
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    status = main(["export", "--checkpoint", str(shipped_checkpoint()), "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert status == 2 and "pip install -e .[export]" in err and "(onnx is missing)" in err
    assert not (tmp_path / "m.onnx").exists()


def test_without_the_extra_the_tests_skip_naming_it_and_fail_in_ci(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(pytest.skip.Exception, match=r"onnx is missing.*pip install -e \.\[export\]"):
        onnx_or_skip(in_ci=False)
    with pytest.raises(pytest.fail.Exception, match=r"CI installs requirements.txt.*\[export\]"):
        onnx_or_skip(in_ci=True)


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_the_trace_size_is_odd_at_every_level(depth):
    for size in export.trace_size(depth):
        levels = [size >> level for level in range(depth)]  # each Down floors: size // 2**level
        assert all(s % 2 == 1 for s in levels) and size >> depth >= 1, levels


def _tiny_checkpoint(path: Path, **config) -> Path:
    torch.manual_seed(0)
    model = UNet(5, base_channels=4, **config)
    torch.save(
        {
            "model": model.state_dict(),
            "model_config": {**config, "num_classes": 5, "in_channels": 3, "base_channels": 4},
            "classes": list("abcde"),
            "colors": [[i, 2 * i, 3 * i] for i in range(5)],
            "mean": [0.5, 0.5, 0.5],
            "std": [0.25, 0.25, 0.25],
            "image_size": [40, 56],
        },
        path,
    )
    return path


@pytest.mark.parametrize("bilinear", [True, False], ids=["bilinear", "transposed conv"])
def test_parity_holds_for_both_up_samplings_and_catches_different_weights(onnx_modules, tmp_path, bilinear):
    ckpt = _tiny_checkpoint(tmp_path / "tiny.pt", depth=3, bilinear=bilinear, max_channels=None)
    result = export.export_onnx(ckpt, tmp_path / "tiny.onnx")  # checks an odd batch of 2 itself
    assert result["parity"]["ok"] and result["parity"]["max_abs_diff"] < 1e-4
    loaded = load_model(ckpt)
    images = torch.randn(3, 3, 41, 70)  # odd height, batch 3
    assert export.check_parity(tmp_path / "tiny.onnx", loaded, images)["ok"]
    with torch.no_grad():
        loaded.model.head.bias += 0.01  # a model that is slightly not the exported one
    changed = export.check_parity(tmp_path / "tiny.onnx", loaded, images)
    assert not changed["within_tolerance"] and not changed["ok"]


def test_a_graph_traced_at_an_even_size_breaks_at_odd_sizes(onnx_modules, tmp_path, monkeypatch):
    # Why export traces at trace_size: traced where no level pads, the graph has no padding at all.
    ckpt = _tiny_checkpoint(tmp_path / "tiny.pt", depth=2, bilinear=True, max_channels=None)
    monkeypatch.setattr(export, "trace_size", lambda depth: (32, 48))
    with pytest.raises(Exception, match="Concat"):
        export.export_onnx(ckpt, tmp_path / "even.onnx")  # its own check runs at 34x52
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pt"]  # a failed export leaves nothing


def _lite0_checkpoint(path: Path) -> Path:
    """An EncoderUNet on Lite0 with ImageNet weights (its decoder random, seeded), normalised as Lite0."""
    torch.manual_seed(0)
    model = EncoderUNet(5, "lite0", base_channels=8, pretrained=True)
    mean, std = input_statistics("lite0")
    torch.save(
        {
            "model": model.state_dict(),
            "model_config": asdict(model.config),
            "classes": list("abcde"),
            "colors": [[i, 2 * i, 3 * i] for i in range(5)],
            "mean": list(mean),
            "std": list(std),
            "image_size": [360, 480],
        },
        path,
    )
    return path


def _frames(size, mean, std) -> torch.Tensor:
    """Two real sample frames resized to ``size`` and normalised: a (2, 3, *size) batch."""
    data = CamVid(SAMPLE, "val", class_set="camvid11")
    preset = EvalPreset(size, mean=mean, std=std)
    return torch.stack([preset(torch.from_numpy(data.load_image(i)).permute(2, 0, 1)) for i in (0, 1)])


def test_the_encoder_unet_exports_with_parity_at_the_protocol_size_and_an_odd_one(onnx_modules, tmp_path):
    ckpt = _lite0_checkpoint(tmp_path / "lite0.pt")
    result = export.export_onnx(ckpt, tmp_path / "lite0.onnx")
    assert result["metadata"]["mean"] == list(input_statistics("lite0")[0])
    loaded = load_model(ckpt)
    for size in [(360, 480), (353, 477)]:
        parity = export.check_parity(tmp_path / "lite0.onnx", loaded, _frames(size, loaded.mean, loaded.std))
        assert parity["ok"] and parity["agreement"] >= 0.999, (size, parity)


def _float_padding(size, kernel: int, stride: int) -> tuple:
    """TF-SAME padding computed through a float (math.ceil): right in PyTorch, frozen by the tracer."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def test_same_padding_in_float_arithmetic_freezes_at_the_traced_size(onnx_modules, tmp_path, monkeypatch):
    # Why encoders.same_padding uses integers only: the float version exports without a complaint and
    # then pads every other size as it padded the traced one.
    monkeypatch.setattr(encoders, "same_padding", _float_padding)
    ckpt = _lite0_checkpoint(tmp_path / "lite0.pt")
    export.export_onnx(ckpt, tmp_path / "float.onnx", check=False)
    loaded = load_model(ckpt)
    try:
        parity = export.check_parity(
            tmp_path / "float.onnx", loaded, _frames((352, 480), loaded.mean, loaded.std)
        )
    except Exception:  # onnxruntime refuses the shapes: as broken as a wrong answer
        return
    assert not parity["ok"], parity


@pytest.mark.slow
def test_bench_onnx_prints_three_rows_on_the_same_frames(onnx_modules):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_onnx.py"), "--quick"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    blocks = re.findall(
        r"^batch (\d+):.*?\n(.*?)^ratio onnxruntime/fp32 at batch \1: ([\d.]+)x; onnxruntime/bf16: ([\d.]+)x",
        run.stdout,
        re.M | re.S,
    )
    assert [b[0] for b in blocks] == ["1", "2"], run.stdout
    for _, table, vs_fp32, vs_bf16 in blocks:
        rows = {
            name: (float(rate), float(ratio), float(same))
            for name, rate, ratio, same in re.findall(
                r"^\s+(\S[^\n]*?)\s+([\d.]+)\s+([\d.]+)x\s+([\d.]+)%$", table, re.M
            )
        }
        assert set(rows) == {"PyTorch fp32", "PyTorch bf16", "onnxruntime"}, table
        assert rows["PyTorch fp32"][1:] == (1.0, 100.0)
        assert rows["onnxruntime"][2] >= 100 * export.MIN_AGREEMENT  # the same model, another runtime
        onnx, bf16 = rows["onnxruntime"][0], rows["PyTorch bf16"][0]
        assert float(vs_fp32) == rows["onnxruntime"][1]
        assert float(vs_bf16) == pytest.approx(onnx / bf16, rel=0.05, abs=0.01)  # of rounded rates
