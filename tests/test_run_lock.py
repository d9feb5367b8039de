"""A training run holds its --out folder: a second run into it is refused while the first lives."""

import os
import socket
import subprocess
import sys

import pytest

from camvid_utils.training import LOCK_NAME, fit
from conftest import tiny


def _lock(out, pid, host=None):
    out.mkdir(parents=True, exist_ok=True)
    (out / LOCK_NAME).write_text(f"{pid} {host or socket.gethostname()}\n")


def test_a_second_run_into_the_folder_of_a_live_run_is_refused_naming_its_process(tmp_path):
    out, refused = tmp_path / "run", []

    def log(line):  # runs inside the first run, which holds the folder
        if not refused:
            assert (out / LOCK_NAME).read_text().split()[0] == str(os.getpid())
            with pytest.raises(
                ValueError, match=rf"{out} is in use by the training run of process {os.getpid()}"
            ):
                fit(tiny(out, epochs=1), overwrite=True, log=lambda *_: None)
            refused.append(line)

    history = fit(tiny(out, epochs=1), log=log)
    assert refused and len(history) == 1
    assert (out / "best.pt").is_file() and (out / "history.json").is_file()
    assert not (out / LOCK_NAME).exists()  # released on exit


def test_a_lock_held_by_another_live_process_is_refused_and_says_what_to_do(tmp_path):
    out = tmp_path / "run"
    _lock(out, os.getppid())
    with pytest.raises(ValueError, match=rf"process {os.getppid()}.*another --out.*delete {out / LOCK_NAME}"):
        fit(tiny(out, epochs=1), log=lambda *_: None)
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written, the lock kept


def test_a_lock_on_another_machine_cannot_be_checked_and_is_respected(tmp_path):
    out = tmp_path / "run"
    _lock(out, 1, host="some-other-host")
    with pytest.raises(ValueError, match=r"process 1 on some-other-host"):
        fit(tiny(out, epochs=1), log=lambda *_: None)


def test_a_stale_lock_of_a_dead_process_is_recognised_and_replaced(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "run"
    _lock(out, dead.pid)
    history = fit(tiny(out, epochs=1), log=lambda *_: None)
    assert len(history) == 1 and not (out / LOCK_NAME).exists()


def test_the_lock_is_released_when_the_run_fails(tmp_path):
    out = tmp_path / "run"

    def log(line):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(tiny(out, epochs=1), log=log)
    assert not (out / LOCK_NAME).exists()
    fit(tiny(out, epochs=1), overwrite=True, log=lambda *_: None)  # the folder is free again


def test_temporaries_a_killed_run_left_are_removed_not_mistaken_for_a_run(tmp_path):
    """SIGTERM during a checkpoint write leaves .last.pt.XXXX.tmp: no run to resume, nothing to refuse."""
    out = tmp_path / "run"
    out.mkdir()
    (out / ".last.pt.k2j4h1.tmp").write_bytes(b"half a checkpoint")
    (out / "history.json.tmp").write_text("[")
    lines = []
    fit(tiny(out, epochs=1), log=lines.append)
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "history.json", "last.pt"]


def test_the_run_says_which_class_set_it_uses_and_how_to_choose_the_other(tmp_path):
    lines = []
    fit(tiny(tmp_path / "run", epochs=1), log=lines.append)
    start = next(line for line in lines if line.startswith("training UNet"))
    assert "camvid32: the 32 classes of the Kaggle layout" in start and "--class-set camvid11" in start


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"image_size": (8, 8), "depth": 4},
            r"--image-size 8 8 is below 16 16, the smallest a U-Net of depth 4",
        ),
        ({"image_size": (16, 16), "depth": 4, "batch_size": 1}, r"--batch-size 1 .*1x1 .*--batch-size 2"),
    ],
    ids=["below-minimum", "one-value-per-channel"],
)
def test_sizes_the_network_cannot_train_on_are_refused_in_the_flags_words(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        fit(tiny(tmp_path / "run", epochs=1, **changes), log=lambda *_: None)
    assert not (tmp_path / "run").exists()  # refused before the folder is made
