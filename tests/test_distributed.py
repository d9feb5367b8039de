"""Training on several processes (``camvid_utils.distributed``), tested on this CPU with gloo.

Two processes start with ``torch.multiprocessing.spawn`` and join a gloo group through a file (the
way torchmetrics, ignite and MONAI test DDP without GPUs); the command line runs under ``torchrun``
itself. What is checked: the sampler deals out the global batches one process draws (the summed
evaluation of the processes' shares is ``test_evaluation``'s); two processes
train to the weights of one process with the same global batch (batch norm frozen in both, so that
its per-process statistics are no difference; no void pixels, so that each process's loss is
normalised alike) to ``WEIGHT_ATOL``; only rank 0 writes; a torchrun run killed and resumed ends
where an uninterrupted one does.
"""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import camvid_utils.training as training
from camvid_utils import distributed
from camvid_utils.checkpoint import load_checkpoint
from camvid_utils.config import TrainConfig
from camvid_utils.encoders import build_encoder
from camvid_utils.model import UNet
from camvid_utils.runtime import seed_everything
from camvid_utils.training import fit
from conftest import REPO, SAMPLE, TINY_FLAGS, kaggle_colors, make_kaggle

# Two processes against one: the same sums in another order (the gradient all-reduce adds two
# half-batch gradients), a few float32 roundings per step. Measured: 9e-8 after 4 SGD steps that
# moved the weights by up to 4e-3.
WEIGHT_ATOL, WEIGHT_RTOL = 1e-6, 1e-5


def _join(rank: int, world: int, rendezvous: str) -> None:
    torch.set_num_threads(1)  # two processes on a machine with few cores
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)


def _spawn(worker, tmp_path: Path, *args, world: int = 2) -> None:
    mp.spawn(worker, args=(world, str(tmp_path / "rendezvous"), *args), nprocs=world, join=True)


class _Indices(torch.utils.data.Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


@pytest.mark.parametrize(("frames", "batch", "world"), [(11, 4, 2), (12, 6, 3), (5, 2, 2), (3, 4, 2)])
def test_the_processes_share_out_the_same_global_batches_as_one_process(frames, batch, world):
    cfg = TrainConfig(batch_size=batch, seed=5, num_workers=0)
    data, cpu = _Indices(frames), torch.device("cpu")
    orders = []
    for epoch in range(3):
        one = [set(b.tolist()) for b in distributed.train_loader(data, cfg, cpu, epoch, rank=0, world=1)]
        shares = [
            [b.tolist() for b in distributed.train_loader(data, cfg, cpu, epoch, rank=r, world=world)]
            for r in range(world)
        ]
        assert len({len(s) for s in shares}) == 1  # every process takes the same number of steps
        together = [set().union(*step) for step in zip(*shares, strict=True)]
        flat = [i for step in together for i in step]
        assert len(flat) == len(set(flat))  # no frame twice in an epoch
        if frames <= batch:  # one short batch: the processes take all but frames % world of it
            assert together[0] <= one[0] and len(together[0]) == frames // world * world
        else:
            assert together == one  # global batch k is one process's batch k
            assert len(together) == frames // batch
            assert all(len(share) == batch // world for step in zip(*shares, strict=True) for share in step)
        orders.append(together)
        again = [b.tolist() for b in distributed.train_loader(data, cfg, cpu, epoch, rank=0, world=world)]
        assert again == shares[0]  # an epoch depends only on the seed and its number
    if frames > batch:
        assert orders[0] != orders[1]  # and each epoch is shuffled anew


def test_the_config_checks_name_what_to_change():
    cfg, cpu = TrainConfig(batch_size=6), torch.device("cpu")
    distributed.check_config(cfg, cpu, 10, world=1)  # one process: nothing to check
    distributed.check_config(cfg, cpu, 10, world=3)
    with pytest.raises(ValueError, match=r"--batch-size 6 is the global batch.*multiple of 4"):
        distributed.check_config(cfg, cpu, 10, world=4)
    with pytest.raises(ValueError, match=r"--sync-bn needs CUDA"):
        distributed.check_config(replace(cfg, sync_bn=True), cpu, 10, world=2)
    with pytest.raises(ValueError, match=r"--data-path loader"):
        distributed.check_config(replace(cfg, data_path="device"), cpu, 10, world=2)
    with pytest.raises(ValueError, match=r"1 training frames cannot be shared by 2"):
        distributed.check_config(replace(cfg, batch_size=2), cpu, 1, world=2)


def test_without_a_process_group_everything_is_the_single_process_path():
    assert not distributed.active() and distributed.get_world_size() == 1 and distributed.is_main()
    data = list(range(5))
    assert distributed.shard(data) is data
    assert distributed.wrap_model(nn.Linear(2, 2), torch.device("cpu")) is None
    assert distributed.mean_over_ranks(1.5, torch.device("cpu")) == 1.5


def _batch_norm_stays_in_eval_mode(self, mode=True):
    """``train`` for batch-norm layers: running statistics, whatever ``model.train()`` says."""
    return nn.Module.train(self, False)


def _fit_worker(rank, world, rendezvous, cfg: dict, saves: str):
    import camvid_utils.training as training

    _join(rank, world, rendezvous)
    nn.modules.batchnorm._BatchNorm.train = _batch_norm_stays_in_eval_mode
    real_save = training.atomic_save

    def recorded(obj, path):
        with open(saves, "a") as f:
            f.write(f"{rank} {Path(path).name}\n")
        real_save(obj, path)

    training.atomic_save = recorded
    fit(TrainConfig.from_dict(cfg), log=lambda *_: None)
    dist.destroy_process_group()


def _no_void_data(root: Path) -> Path:
    """Eight training and three validation frames of 24x32 whose every pixel is a class (no void)."""
    rows = kaggle_colors()
    classes = [i for i, (name, _) in enumerate(rows) if name.lower() != "void"]
    rng = np.random.default_rng(0)
    ids = lambda: rng.choice(classes, size=(24, 32))  # noqa: E731
    return make_kaggle(root, {"train": [ids() for _ in range(8)], "val": [ids() for _ in range(3)]}, rows)


@pytest.mark.slow  # one of the slowest tests: out of the short contributor run
def test_two_processes_train_to_the_weights_of_one_with_the_same_global_batch(tmp_path, monkeypatch):
    cfg = TrainConfig(
        data=str(_no_void_data(tmp_path / "data")),
        epochs=2,
        batch_size=4,  # the global batch: 2 frames on each process, 2 steps per epoch
        lr=0.5,  # focal loss on random frames has small gradients: steps that move the weights
        image_size=(24, 32),
        scale=(1.0, 1.0),
        hflip=0.0,
        jitter=0.0,
        base_channels=4,
        depth=2,
        amp="off",
        num_workers=0,
        seed=1,
    )
    saves = tmp_path / "saves.txt"
    _spawn(_fit_worker, tmp_path, asdict(replace(cfg, out=str(tmp_path / "two"))), str(saves))
    monkeypatch.setattr(nn.modules.batchnorm._BatchNorm, "train", _batch_norm_stays_in_eval_mode)
    # one process fed the same global batches: the sampler with world=1 (the test above checks them)
    monkeypatch.setattr(
        training,
        "train_loader",
        lambda *args, **kwargs: distributed.train_loader(*args, **kwargs, rank=0, world=1),
    )
    one = fit(replace(cfg, out=str(tmp_path / "one")), log=lambda *_: None)

    two = json.loads((tmp_path / "two" / "history.json").read_text())
    for a, b in zip(two, one, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    ours = load_checkpoint(tmp_path / "two" / "last.pt")["model"]
    theirs = load_checkpoint(tmp_path / "one" / "last.pt")["model"]
    seed_everything(cfg.seed)
    start = UNet(31, 3, cfg.base_channels, cfg.depth, cfg.bilinear).state_dict()
    moved = max((theirs[k] - start[k]).abs().max().item() for k in start if k.endswith("weight"))
    assert moved > 1000 * WEIGHT_ATOL  # the steps changed the weights far beyond the tolerance
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], atol=WEIGHT_ATOL, rtol=WEIGHT_RTOL)
    # only rank 0 wrote, one last.pt per epoch, into a folder that holds one run
    written = saves.read_text().split("\n")[:-1]
    assert {line.split()[0] for line in written} == {"0"}
    assert sum(line.endswith("last.pt") for line in written) == cfg.epochs
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["best.pt", "history.json", "last.pt"]


def _torchrun(*args, **kwargs) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    return subprocess.Popen(
        [*command, "-m", "camvid_utils", "train", *args],
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (torchrun starts its workers in their own sessions)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        _kill_tree(int(child))
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc to find torchrun's workers")
def test_a_torchrun_run_killed_and_resumed_ends_where_an_uninterrupted_one_does(tmp_path):
    args = ["--data", str(SAMPLE), "--epochs", "3", *TINY_FLAGS, "--device", "cpu", "--seed", "3"]
    reference = _torchrun(*args, "--out", str(tmp_path / "ref"))
    victim = _torchrun(*args, "--out", str(tmp_path / "run"))
    history = tmp_path / "run" / "history.json"
    deadline = time.monotonic() + 300
    while not (history.exists() and len(json.loads(history.read_text())) == 1):
        assert victim.poll() is None and time.monotonic() < deadline, victim.communicate()
        time.sleep(0.02)
    _kill_tree(victim.pid)  # torchrun and both workers, in epoch 2
    victim.communicate()
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 0
    resumed = _torchrun(*args, "--out", str(tmp_path / "run"), "--resume")
    stdout, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr[-3000:]
    assert "torchrun: 2 processes, gloo backend; global batch 2: 1 frame(s) on each process" in stdout
    assert "resumed" in stdout and "after epoch 1" in stdout
    assert [line[:9] for line in stdout.splitlines() if line.startswith("epoch ")] == [
        "epoch 2/3",
        "epoch 3/3",
    ]  # one line per epoch: only rank 0 logs
    ref_out, ref_err = reference.communicate(timeout=600)
    assert reference.returncode == 0, ref_err[-3000:]
    ours, theirs = json.loads(history.read_text()), json.loads((tmp_path / "ref/history.json").read_text())
    assert [h["epoch"] for h in ours] == [1, 2, 3]
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(ours) == strip(theirs)
    a, b = load_checkpoint(tmp_path / "run/last.pt"), load_checkpoint(tmp_path / "ref/last.pt")
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0)
    for out in ("run", "ref"):
        assert sorted(p.name for p in (tmp_path / out).iterdir()) == ["best.pt", "history.json", "last.pt"]


def test_outside_torchrun_there_is_no_process_group_and_too_few_gpus_are_named(monkeypatch):
    for name in ("WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with distributed.process_group(torch.device("cpu")) as group:
        assert group is None and not distributed.active()
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert not distributed.launched_by_torchrun()  # --nproc-per-node 1: the single-process path
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.launched_by_torchrun()
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"process 1 on a machine with 1 GPU.*--nproc-per-node 1"):
        with distributed.process_group(torch.device("cuda")):
            pass
    assert not distributed.active()
    assert distributed.backend_for(torch.device("cuda")) == "nccl"
    assert distributed.backend_for(torch.device("cpu")) == "gloo"


def _plain_fit_worker(rank, world, rendezvous, cfg: dict):
    _join(rank, world, rendezvous)
    fit(TrainConfig.from_dict(cfg), log=lambda *_: None)
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_train_a_frozen_then_unfrozen_encoder(tmp_path):
    # A frozen encoder gets no gradients, which DistributedDataParallel must be told to expect: without
    # find_unused_parameters the first step after the freeze stops with a reduction error.
    cfg = TrainConfig(
        data=str(_no_void_data(tmp_path / "data")),
        out=str(tmp_path / "run"),
        encoder="lite0",
        freeze_epochs=1,
        epochs=2,
        batch_size=4,
        image_size=(32, 32),
        base_channels=4,
        amp="off",
        num_workers=0,
        seed=1,
    )
    _spawn(_plain_fit_worker, tmp_path, asdict(cfg))
    assert [h["epoch"] for h in json.loads((tmp_path / "run" / "history.json").read_text())] == [1, 2]
    weights = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    imagenet = build_encoder("lite0", pretrained=True).state_dict()
    assert not torch.equal(weights["encoder._conv_stem.weight"], imagenet["_conv_stem.weight"])  # unfrozen
