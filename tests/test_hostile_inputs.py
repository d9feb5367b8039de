"""Every command against broken and hostile inputs built from the bundled sample.

Each case runs one command (``python -m camvid_utils ...`` through ``cli.main`` in this process,
which prints and returns exactly what the command line would) on one bad input and checks what a
user sees: exit status 1 or 2, one ``error:`` line that names the bad file or flag, no traceback,
and no file outside ``--out`` created, changed or deleted. A malicious checkpoint must also run none
of its code.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from camvid_utils.cli import main
from conftest import REPO, SAMPLE, TINY_FLAGS

# about 80 runs of the command line in its own process (2 s each, most of it importing torch): outside
# the contributors' short run, in `pytest`
pytestmark = pytest.mark.slow

TRAIN_FLAGS = ["--epochs", "1", "--amp", "off", *TINY_FLAGS]
FRAME_SIZE = (64, 48)  # (W, H): the sample's frames shrunk, so that every command takes a moment


def _shrink(src: Path, dst: Path, label: bool) -> None:
    with Image.open(src) as img:
        img.convert("RGB").resize(FRAME_SIZE, Image.NEAREST if label else Image.BILINEAR).save(dst)


def _tiny_sample(root: Path) -> Path:
    """The bundled sample with two frames per split, shrunk to 64x48 (labels with nearest neighbour)."""
    root.mkdir(parents=True)
    shutil.copy(SAMPLE / "class_dict.csv", root / "class_dict.csv")
    for split in ("train", "val", "test"):
        (root / split).mkdir()
        (root / f"{split}_labels").mkdir()
        for frame in sorted((SAMPLE / split).glob("*.png"))[:2]:
            _shrink(frame, root / split / frame.name, label=False)
            label = f"{frame.stem}_L.png"
            _shrink(SAMPLE / f"{split}_labels" / label, root / f"{split}_labels" / label, label=True)
    return root


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A clean tiny dataset and a checkpoint trained on it (1 epoch), shared read-only by the cases."""
    root = tmp_path_factory.mktemp("base")
    data = _tiny_sample(root / "data")
    out = root / "run"
    status = main(["train", "--data", str(data), "--out", str(out), *TRAIN_FLAGS])
    assert status == 0
    return data, out / "best.pt"


def _snapshot(root: Path, out: Path | None) -> dict[str, str]:
    """Return {path: sha256} of every file below ``root`` that is not below ``out``."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not (out is not None and (path == out or out in path.parents)):
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    """Return {path: (size, mtime)} below ``root``, without .git and bytecode caches."""
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
        and ".git" not in p.parts
        and "__pycache__" not in p.parts
        and ".pytest_cache" not in p.parts
    }


def _png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


class _Evil:
    """Unpickling this calls os.mkdir(marker): what a malicious checkpoint would do with a shell."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def _huge_png(path: Path) -> None:
    """A valid PNG whose header claims 30000 x 30000 pixels (Pillow refuses it as a decompression bomb)."""
    Image.new("1", (30000, 30000)).save(path, optimize=False)


# Each case: (id, build(ws, data, ckpt) -> (argv, out or None, name the error must hold)).
# ``ws`` is an empty folder for this case; ``data`` a fresh copy of the tiny dataset inside it.


def _data_case(breaker):
    def build(ws, data, ckpt, command):
        name = breaker(data, "train" if command == "train" else "val")  # where each command looks first
        out = ws / "out"
        if command == "train":
            return ["train", "--data", str(data), "--out", str(out), *TRAIN_FLAGS], out, name
        json_out = ws / "out" / "scores.json"
        return ["evaluate", "--data", str(data), "--checkpoint", str(ckpt), "--split", "val",
                "--json", str(json_out)], out, name  # fmt: skip

    return build


def _first(data: Path, folder: str) -> Path:
    return sorted((data / folder).glob("*.png"))[0]


def _truncate(path: Path) -> str:
    path.write_bytes(path.read_bytes()[:100])
    return path.name


def _to_jpeg(path: Path) -> str:
    path.write_bytes(_png_bytes(np.asarray(Image.open(path).convert("RGB")), "JPEG"))
    return path.name


def _wrong_size(path: Path) -> str:
    Image.open(path).convert("RGB").resize((32, 24), Image.NEAREST).save(path)
    return path.name


def _text(path: Path) -> str:
    path.write_text("this is not an image\n")
    return path.name


def _class_dict(text: str, encoding: str = "utf-8"):
    def breaker(data: Path) -> str:
        (data / "class_dict.csv").write_bytes(text.encode(encoding))
        return "class_dict.csv"

    return breaker


def _duplicate_class(data: Path) -> str:
    path = data / "class_dict.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[1].split(",")[0] + ",1,2,3"]) + "\n")
    return "class_dict.csv"


def _empty_split(data: Path, split: str) -> str:
    for path in (data / split).iterdir():
        path.unlink()
    return split


def _label_missing(data: Path, split: str) -> str:
    label = _first(data, f"{split}_labels")
    label.unlink()
    return label.name


def _huge_frame(data: Path, split: str) -> str:
    _huge_png(_first(data, split))
    return _first(data, split).name


DATA_BREAKERS = {
    "truncated-frame": lambda d, s: _truncate(_first(d, s)),
    "truncated-label": lambda d, s: _truncate(_first(d, f"{s}_labels")),
    "jpeg-label": lambda d, s: _to_jpeg(_first(d, f"{s}_labels")),
    "label-wrong-size": lambda d, s: _wrong_size(_first(d, f"{s}_labels")),
    "text-as-frame": lambda d, s: _text(_first(d, s)),
    "huge-frame": _huge_frame,
    "label-missing": _label_missing,
    "duplicate-class": lambda d, s: _duplicate_class(d),
    "latin1-class-dict": lambda d, s: _class_dict("name,r,g,b\nStraße,1,2,3\n", "latin-1")(d),
    "empty-class-dict": lambda d, s: _class_dict("")(d),
    "empty-split": _empty_split,
}


def _checkpoint_case(maker):
    def build(ws, data, ckpt, command):
        bad = ws / "bad.pt"
        maker(bad, ckpt, ws)
        out = ws / "out"
        argv = {
            "evaluate": ["evaluate", "--data", str(data), "--checkpoint", str(bad), "--split", "val"],
            "predict": ["predict", "--checkpoint", str(bad), str(_first(data, "test")), "--out", str(out)],
            "export": ["export", "--checkpoint", str(bad), "--out", str(out / "model.onnx")],
            "train": ["train", "--data", str(data), "--init-from", str(bad), "--out", str(out), *TRAIN_FLAGS],
        }[command]  # fmt: skip
        return argv, out, bad.name

    return build


def _edited(**changes):
    def maker(bad, ckpt, ws):
        saved = torch.load(ckpt, weights_only=True)
        torch.save({**saved, **changes}, bad)

    return maker


CHECKPOINT_MAKERS = {
    "truncated": lambda bad, ckpt, ws: bad.write_bytes(ckpt.read_bytes()[:5000]),
    "text": lambda bad, ckpt, ws: bad.write_text("epoch,loss\n1,0.5\n"),
    "empty": lambda bad, ckpt, ws: bad.write_bytes(b""),
    "malicious-pickle": lambda bad, ckpt, ws: torch.save({"model": _Evil(ws / "pwned")}, bad),
    "not-a-dict": lambda bad, ckpt, ws: torch.save([1, 2, 3], bad),
    "classes-short": _edited(classes=["Sky"]),
    "std-zero": _edited(std=[0.0, 0.0, 0.0]),
    "image-size-zero": _edited(image_size=[0, 0]),
}


def _predict_case(maker):
    def build(ws, data, ckpt, command):
        images = ws / "images"
        images.mkdir()
        shutil.copy(_first(data, "test"), images / "good.png")
        name = maker(images)
        out = ws / "out"
        return ["predict", "--checkpoint", str(ckpt), str(images), "--out", str(out)], out, name

    return build


def _image(name: str, content):
    def maker(images: Path) -> str:
        path = images / name
        content(path)
        return name

    return maker


PREDICT_MAKERS = {
    "zero-bytes": _image("zero.png", lambda p: p.write_bytes(b"")),
    "text-as-jpg": _image("notes.jpg", lambda p: p.write_text("hello")),
    "truncated-jpg": _image(
        "cut.jpg", lambda p: p.write_bytes(_png_bytes(np.zeros((48, 64, 3), np.uint8), "JPEG")[:200])
    ),
    "huge-png": _image("huge.png", _huge_png),
    "float-tiff": _image("float.tif", lambda p: Image.fromarray(np.zeros((4, 4), np.float32)).save(p)),
}


def _archive_case(maker):
    def build(ws, data, ckpt, command):
        archive = ws / "archive.zip"
        name = maker(archive, data)
        dest = ws / "out"
        return ["download", "--dest", str(dest), "--url", archive.as_uri()], dest, name

    return build


def _zip(archive: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, content in members.items():
            z.writestr(name, content)


def _segnet_members(data: Path, **changes) -> dict[str, bytes]:
    frame = _first(data, "train").read_bytes()
    label = _png_bytes(np.zeros((48, 64), np.uint8))
    members = {}
    for split, n in {"train": 367, "val": 101, "test": 233}.items():
        for i in range(n):
            members[f"S/CamVid/{split}/{i:04d}.png"] = frame
            members[f"S/CamVid/{split}annot/{i:04d}.png"] = label
    return {**members, **changes}


ARCHIVE_MAKERS = {
    "bomb": lambda a, d: (
        _zip(a, _segnet_members(d, **{"S/CamVid/val/0003.png": b"\0" * (65 << 20)})),
        "0003.png",
    )[1],
    "traversal": lambda a, d: (_zip(a, {**_segnet_members(d), "S/../../evil.png": b"x"}), "evil.png")[1],
    "not-a-png": lambda a, d: (
        _zip(a, _segnet_members(d, **{"S/CamVid/testannot/0007.png": b"GIF89a"})),
        "0007.png",
    )[1],
    "truncated": lambda a, d: (
        _zip(a, _segnet_members(d)),
        a.write_bytes(a.read_bytes()[:3000]),
        "archive.zip",
    )[2],
    "html-page": lambda a, d: (a.write_text("<html>404</html>"), "archive.zip")[1],
}

CASES = [
    *(pytest.param(cmd, _data_case(b), id=f"{cmd}-data-{k}") for k, b in DATA_BREAKERS.items()
      for cmd in ("train", "evaluate")),
    *(pytest.param(cmd, _checkpoint_case(m), id=f"{cmd}-checkpoint-{k}") for k, m in CHECKPOINT_MAKERS.items()
      for cmd in ("evaluate", "predict", "export", "train")),
    *(pytest.param("predict", _predict_case(m), id=f"predict-image-{k}") for k, m in PREDICT_MAKERS.items()),
    *(pytest.param("download", _archive_case(m), id=f"download-{k}") for k, m in ARCHIVE_MAKERS.items()),
]  # fmt: skip


@pytest.mark.parametrize(("command", "build"), CASES)
def test_every_command_refuses_a_bad_input_in_one_line_and_changes_nothing(
    command, build, base, tmp_path, capsys, monkeypatch
):
    data = tmp_path / "data"
    shutil.copytree(base[0], data)
    argv, out, name = build(tmp_path, data, base[1], command)
    monkeypatch.chdir(tmp_path)  # anything written to a relative path lands where the snapshot sees it
    before, repo_before = _snapshot(tmp_path, out), _listing(REPO)
    capsys.readouterr()

    status = main(argv)

    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert status in (1, 2), err
    assert "Traceback" not in err and len(errors) == 1, err
    assert name in errors[0] or name in err, err
    assert _snapshot(tmp_path, out) == before
    assert _listing(REPO) == repo_before  # nothing written into the repository (runs/, data/)
    assert not (tmp_path / "pwned").exists()  # the malicious pickle ran nothing


def test_predict_skips_a_bad_image_and_writes_the_others(base, tmp_path, capsys):
    """predict's promise: unreadable images are reported and skipped; the others are written."""
    data, ckpt = base
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "c.png"):
        shutil.copy(_first(data, "test"), images / name)
    _huge_png(images / "b.png")
    status = main(["predict", "--checkpoint", str(ckpt), str(images), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 1 and "b.png" in err and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a_mask.png", "a_overlay.png", "c_mask.png", "c_overlay.png"
    ]  # fmt: skip


def test_predict_honours_the_exif_orientation_of_a_phone_photo(base, tmp_path):
    """A photo stored sideways with Orientation 6 gets the mask of the upright photo, upright."""
    data, ckpt = base
    upright = np.asarray(Image.open(_first(data, "test")).convert("RGB"))  # (48, 64, 3)
    Image.fromarray(upright).save(tmp_path / "upright.png")
    sideways = Image.fromarray(np.rot90(upright, 1).copy())  # (64, 48, 3), viewed after a clockwise turn
    exif = sideways.getexif()
    exif[0x0112] = 6
    sideways.save(tmp_path / "phone.png", exif=exif.tobytes())
    for name in ("upright", "phone"):
        assert main(["predict", "--checkpoint", str(ckpt), str(tmp_path / f"{name}.png"),
                     "--out", str(tmp_path / f"out-{name}")]) == 0  # fmt: skip
    a = np.asarray(Image.open(tmp_path / "out-upright" / "upright_mask.png"))
    b = np.asarray(Image.open(tmp_path / "out-phone" / "phone_mask.png"))
    np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(sys.platform == "win32", reason="the lock's liveness check is POSIX")
def test_train_into_the_folder_of_a_live_run_exits_2_naming_the_process(base, tmp_path, capsys):
    from camvid_utils.training import LOCK_NAME

    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text(f"{os.getppid()} {__import__('socket').gethostname()}\n")
    status = main(["train", "--data", str(base[0]), "--out", str(out), *TRAIN_FLAGS])
    err = capsys.readouterr().err
    assert status == 2 and f"process {os.getppid()}" in err and err.count("\n") == 1


def test_predict_with_out_the_input_folder_predicts_its_images_not_its_own_outputs(base, tmp_path, capsys):
    data, ckpt = base
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(_first(data, "test"), folder / "street.png")
    argv = ["predict", "--checkpoint", str(ckpt), str(folder), "--out", str(folder)]
    assert main(argv) == 0
    assert main(argv) == 2  # the first run's outputs are there: replaced only when asked
    assert "street_mask.png" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0  # and the second run does not predict the first's masks
    assert sorted(p.name for p in folder.iterdir()) == ["street.png", "street_mask.png", "street_overlay.png"]


@pytest.mark.parametrize("video", [False, True])
def test_predict_out_that_is_a_file_names_the_flag(base, tmp_path, capsys, video):
    (tmp_path / "taken").write_text("mine")
    source = str(base[0] / "test") if video else str(_first(base[0], "test"))
    extra = ["--video", str(tmp_path / "v.gif")] if video else []
    status = main(["predict", "--checkpoint", str(base[1]), source, "--out", str(tmp_path / "taken"), *extra])
    err = capsys.readouterr().err
    assert status == 2 and "--out" in err and "taken is a file" in err and "Errno" not in err
    assert (tmp_path / "taken").read_text() == "mine"


def test_predict_reads_webp_bmp_tiff_and_upper_case_suffixes(base, tmp_path, capsys):
    data, ckpt = base
    frame = Image.open(_first(data, "test")).convert("RGB")
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("a.webp", "b.bmp", "c.tif", "D.PNG", "e.JPG"):
        frame.save(folder / name)
    assert main(["predict", "--checkpoint", str(ckpt), str(folder), "--out", str(tmp_path / "out")]) == 0
    masks = sorted(p.name for p in (tmp_path / "out").glob("*_mask.png"))
    assert masks == ["D_mask.png", "a_mask.png", "b_mask.png", "c_mask.png", "e_mask.png"]


def test_an_error_in_a_dataloader_worker_is_the_same_one_line(base, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(base[0], data)
    _truncate(_first(data, "train"))
    flags = [f for f in TRAIN_FLAGS]
    flags[flags.index("--workers") + 1] = "1"
    status = main(["train", "--data", str(data), "--out", str(tmp_path / "out"), *flags])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert status == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith(f"error: cannot decode {_first(data, 'train')}"), err


@pytest.mark.parametrize("command", ["train", "predict"])
def test_ctrl_c_advice_fits_the_command_and_works(base, tmp_path, capsys, monkeypatch, command):
    from camvid_utils import cli

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "fit" if command == "train" else "load_model", interrupt)
    out = tmp_path / "out"
    argv = {
        "train": ["train", "--data", str(base[0]), "--out", str(out), *TRAIN_FLAGS],
        "predict": ["predict", "--checkpoint", str(base[1]), str(_first(base[0], "test")), "--out", str(out)],
    }[command]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "--resume" not in err  # nothing was saved to resume, and predict has no such flag
    assert ("no checkpoint was saved" if command == "train" else "run the command again") in err


def test_resuming_a_run_saved_with_device_cuda_on_a_machine_without_says_how(base, tmp_path, capsys):
    """The user did not ask for CUDA here: the saved run did. Say so, and give the flag that works."""
    from camvid_utils.checkpoint import atomic_save

    out = tmp_path / "run"
    assert main(["train", "--data", str(base[0]), "--out", str(out), *TRAIN_FLAGS]) == 0
    last = torch.load(out / "last.pt", weights_only=True)
    last["train_config"]["device"] = "cuda"
    atomic_save(last, out / "last.pt")
    capsys.readouterr()
    argv = ["train", "--data", str(base[0]), "--out", str(out), "--resume", "--epochs", "2"]
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "was saved with --device cuda" in err and "--device cpu" in err and "was asked for" not in err
    assert main([*argv, "--device", "cpu"]) == 0  # the advice works


def test_an_audio_only_video_says_it_has_no_pictures(base, tmp_path, capsys):
    av = pytest.importorskip("av")
    path = tmp_path / "voice.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    status = main(["predict", "--checkpoint", str(base[1]), str(path), "--video", str(tmp_path / "out.gif")])
    err = capsys.readouterr().err
    assert status == 2 and "voice.mp4 has no video stream" in err and "index" not in err


@pytest.mark.parametrize(
    ("video", "fps", "message"),
    [
        ("out.gif", "1000", r"--fps 1000 is outside what a GIF can store \(0\.0015 to 100 fps\)"),
        ("out.gif", "0.0001", r"--fps 0\.0001 is outside what a GIF can store"),
        ("out.mp4", "1e-09", r"--fps 1e-09 is outside what an MP4 can store \(0\.01 to 1000 fps\)"),
    ],
)
def test_an_fps_the_format_cannot_store_is_refused_before_predicting(
    base, tmp_path, capsys, video, fps, message
):
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(_first(base[0], "test"), frames / "a.png")
    out = tmp_path / video
    status = main(["predict", "--checkpoint", str(base[1]), str(frames), "--video", str(out), "--fps", fps])
    err = capsys.readouterr().err
    assert status == 2 and re.search(message, err), err
    assert not out.exists()
