"""Where a learner's data and model are found: the repository, the current folder (Colab), a copy;
and the notebooks' set-up line that says which."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from camvid_utils import download, locations
from camvid_utils.checkpoint import CheckpointError
from camvid_utils.cli import build_parser
from camvid_utils.data import CamVidError
from camvid_utils.locations import (
    OWN_MODEL_OR_DATA,
    default_data_dir,
    find_checkpoint,
    find_data_root,
    is_bundled_sample,
    is_shipped_checkpoint,
    sample_root,
    setup,
    shipped_checkpoint,
)


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """No CAMVID_ROOT, a repository without data/camvid, and the current folder elsewhere."""
    monkeypatch.delenv("CAMVID_ROOT", raising=False)
    repo = tmp_path / "repo"
    (repo / "data" / "sample").mkdir(parents=True)
    monkeypatch.setattr(locations, "repo_root", lambda: repo)
    monkeypatch.setattr(locations, "_said_sample", True)
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
    monkeypatch.setattr(locations, "_said_sample", False)
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


def test_find_data_root_prefers_env_then_full_then_sample(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAMVID_ROOT", str(tmp_path))
    assert find_data_root() == tmp_path
    monkeypatch.setenv("CAMVID_ROOT", str(tmp_path / "missing"))
    with pytest.raises(CamVidError, match="CAMVID_ROOT"):
        find_data_root()
    monkeypatch.delenv("CAMVID_ROOT")
    monkeypatch.setattr(locations, "repo_root", lambda: tmp_path)
    monkeypatch.setattr(locations, "_said_sample", False)
    (tmp_path / "data" / "sample").mkdir(parents=True)
    assert find_data_root() == tmp_path / "data" / "sample"
    assert find_data_root() == tmp_path / "data" / "sample"
    assert capsys.readouterr().out.count("bundled sample") == 1  # said once
    (tmp_path / "data" / "camvid").mkdir(parents=True)
    assert find_data_root() == tmp_path / "data" / "camvid"


def test_an_install_without_the_repository_says_what_to_run(tmp_path, monkeypatch):
    # pip install . copies the package into site-packages, without data/ beside it
    fake = tmp_path / "site-packages" / "camvid_utils" / "locations.py"
    monkeypatch.setattr(locations, "__file__", str(fake))
    with pytest.raises(
        CamVidError, match=r"installed without its repository.*git clone .* pip install -e \."
    ):
        sample_root()
    with pytest.raises(
        CheckpointError, match=r"installed without its repository.*git clone .*pip install -e \."
    ):
        shipped_checkpoint()
    assert is_bundled_sample(Path(__file__).resolve().parent.parent / "data" / "sample") is False
    assert is_shipped_checkpoint(fake) is False


def test_find_checkpoint_prefers_your_own_model_and_says_how_to_go_back(tmp_path, monkeypatch):
    monkeypatch.delenv("CAMVID_CHECKPOINT", raising=False)
    assert find_checkpoint() == shipped_checkpoint()
    mine = tmp_path / "best.pt"
    monkeypatch.setenv("CAMVID_CHECKPOINT", str(mine))
    with pytest.raises(CheckpointError, match="unset CAMVID_CHECKPOINT to use the shipped model"):
        find_checkpoint()
    mine.write_bytes(b"weights")
    assert find_checkpoint() == mine


@pytest.fixture
def default_path(monkeypatch, tmp_path):
    """The course's default path: no CAMVID_ROOT or CAMVID_CHECKPOINT, nothing in data/camvid."""
    for name in ("CAMVID_ROOT", "CAMVID_CHECKPOINT", "CAMVID_SMOKE", "CAMVID_RUNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(locations, "default_data_dir", lambda: tmp_path / "no data here")
    monkeypatch.setattr(locations, "_said_sample", True)
    monkeypatch.chdir(tmp_path)


def test_setup_on_the_default_path_prints_one_line_of_where_things_are(default_path, capsys):
    here = setup()
    assert here.root == sample_root() and here.checkpoint == shipped_checkpoint()
    assert here.shipped and here.on_sample and here.default_path
    assert here.smoke is False and isinstance(here.device, torch.device)
    assert here.runs == locations.repo_root() / "runs"
    where = f"data: {sample_root()} | device: {here.device}"
    assert capsys.readouterr().out == f"model: {shipped_checkpoint().name} | {where}\n"


def test_setup_says_when_the_numbers_are_your_own(default_path, monkeypatch, tmp_path, capsys):
    copy = tmp_path / "best.pt"
    shutil.copy(shipped_checkpoint(), copy)
    monkeypatch.setenv("CAMVID_CHECKPOINT", str(copy))
    assert setup().default_path, "a byte-for-byte copy of the shipped model is the shipped model"
    assert OWN_MODEL_OR_DATA not in capsys.readouterr().out
    changed = bytearray(copy.read_bytes())
    changed[-100] ^= 1
    copy.write_bytes(bytes(changed))
    here = setup()
    assert not here.shipped and here.on_sample and not here.default_path
    assert capsys.readouterr().out.splitlines()[1:] == [OWN_MODEL_OR_DATA]
    monkeypatch.delenv("CAMVID_CHECKPOINT")
    monkeypatch.setenv("CAMVID_ROOT", str(tmp_path))
    here = setup()
    assert here.shipped and not here.on_sample and here.root == tmp_path
    assert capsys.readouterr().out.splitlines()[1:] == [OWN_MODEL_OR_DATA]


def test_setup_without_a_model_reads_the_switches(default_path, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CAMVID_SMOKE", "1")
    monkeypatch.setenv("CAMVID_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("CAMVID_CHECKPOINT", str(tmp_path / "missing.pt"))  # never looked for
    here = setup(model=False)
    assert here.checkpoint is None and not here.shipped and here.smoke and here.runs == tmp_path / "runs"
    assert capsys.readouterr().out == f"data: {sample_root()} | device: {here.device}\n"


@pytest.mark.parametrize("value", ["~/my runs", "", "  "])
def test_camvid_runs_expands_the_home_and_an_empty_value_means_the_default(value, monkeypatch, tmp_path):
    from camvid_utils.locations import repo_root, runs_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CAMVID_RUNS", value)
    expected = tmp_path / "my runs" if value.strip() else repo_root() / "runs"
    assert runs_dir() == expected
