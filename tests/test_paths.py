"""Where a learner's data and model are found: the repository, the current folder (Colab), a copy."""

from __future__ import annotations

import shutil

import pytest

from camvid_utils import data, download
from camvid_utils.checkpoint import is_shipped_checkpoint, shipped_checkpoint
from camvid_utils.cli import build_parser
from camvid_utils.data import default_data_dir, find_data_root, is_bundled_sample, sample_root


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """No CAMVID_ROOT, a repository without data/camvid, and the current folder elsewhere."""
    monkeypatch.delenv("CAMVID_ROOT", raising=False)
    repo = tmp_path / "repo"
    (repo / "data" / "sample").mkdir(parents=True)
    monkeypatch.setattr(data, "repo_root", lambda: repo)
    monkeypatch.setattr(data, "_said_sample", True)
    cwd = tmp_path / "content"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return repo, cwd


def test_data_downloaded_into_the_current_folder_is_found(clean_env):
    # Colab: the notebook runs in /content, the clone is /content/camvid-segmentation, and
    # `download --dest data/camvid` lands in /content/data/camvid.
    repo, cwd = clean_env
    assert find_data_root() == repo / "data" / "sample"
    (cwd / "data" / "camvid").mkdir(parents=True)
    assert find_data_root() == cwd / "data" / "camvid"


def test_the_repository_copy_wins_over_the_current_folder(clean_env):
    repo, cwd = clean_env
    (cwd / "data" / "camvid").mkdir(parents=True)
    default_data_dir().mkdir(parents=True)
    assert default_data_dir() == repo / "data" / "camvid"
    assert find_data_root() == repo / "data" / "camvid"


def test_download_defaults_to_the_folder_find_data_root_reads(clean_env, monkeypatch):
    seen = {}

    def complete(dest, counts=None):
        seen["dest"] = dest
        return []  # nothing missing: download_segnet returns without fetching

    monkeypatch.setattr(download, "missing_from", complete)
    monkeypatch.setattr(download, "_remove_leftovers", lambda dest: None)
    assert download.download_segnet(log=lambda line: None) == default_data_dir()
    assert seen["dest"] == default_data_dir()
    # the command line needs no --dest either: `python -m camvid_utils download` works as printed
    args = build_parser().parse_args(["download"])
    assert args.dest is None


def test_the_sample_message_names_a_command_that_exists(clean_env, monkeypatch, capsys):
    monkeypatch.setattr(data, "_said_sample", False)
    find_data_root()
    said = capsys.readouterr().out
    assert "python -m camvid_utils download`" in said and str(default_data_dir()) in said
    build_parser().parse_args(["download"])  # the advised command parses as written


def test_bundled_sample_and_shipped_checkpoint_are_recognised(tmp_path):
    assert is_bundled_sample(sample_root()) and is_bundled_sample(str(sample_root()) + "/")
    assert not is_bundled_sample(tmp_path)
    assert is_shipped_checkpoint(shipped_checkpoint())
    copy = tmp_path / "copy.pt"
    shutil.copy(shipped_checkpoint(), copy)
    assert is_shipped_checkpoint(copy)  # a byte-for-byte copy is the shipped model
    changed = bytearray(copy.read_bytes())
    changed[-100] ^= 1
    copy.write_bytes(bytes(changed))
    assert not is_shipped_checkpoint(copy)
    assert not is_shipped_checkpoint(tmp_path / "missing.pt")
