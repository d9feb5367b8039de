"""Training on several processes with ``torchrun`` and PyTorch's ``DistributedDataParallel`` (DDP).

``torchrun --nproc-per-node N -m camvid_utils train ...`` starts N copies of the command; each
joins one process group (NCCL on CUDA, one GPU per process; gloo on the CPU) and trains the same
model on its own share of every batch. DDP averages the gradients across processes after each
backward pass, so every process takes the same optimiser step and the weights stay identical.

What changes against one process:

* ``batch_size`` stays the *global* batch: each of the N processes takes ``batch_size / N`` frames
  of it (N must divide it), so the learning rate, the schedule and the number of steps per epoch
  are those of one process with the same batch. To use more GPUs for a larger batch, raise
  ``--batch-size`` and scale ``--lr`` with it (the linear scaling rule of Goyal et al., 2017).
* The order of each epoch comes from a ``DistributedSampler`` seeded with the run's seed and
  ``set_epoch(epoch)``: the global batches are the same for any number of processes (not the order
  of a run without torchrun, which shuffles with its own loader), and each process's augmentation
  is seeded by (seed, epoch, rank), so a resumed run sees exactly what an uninterrupted one would.
* Batch norm normalises each process's own share of the batch unless ``sync_bn`` converts it to
  ``SyncBatchNorm`` (statistics over the whole global batch; CUDA only, as PyTorch's is). Each
  process's focal loss is the mean over its own labelled pixels and DDP averages the processes'
  gradients: a global batch equals one process's exactly when the shares hold as many labelled
  (non-void) pixels.
* Evaluation is split across processes (every N-th frame each) and the confusion matrices and loss
  sums are added with an all-reduce (``Evaluation.all_reduce``): one confusion matrix over the whole
  split, as in one process.
* Only rank 0 writes checkpoints and ``history.json`` and prints; every rank reads ``last.pt`` on
  ``--resume``. The single-process path (no ``torchrun``, or ``--nproc-per-node 1``) is unchanged.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.distributed import DistributedSampler

from .config import flag, how_to_set
from .runtime import drops_last, epoch_generator, epoch_seed


def launched_by_torchrun() -> bool:
    """Return True when this process is one of several that ``torchrun`` started."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "LOCAL_RANK" in os.environ


def active() -> bool:
    """Return True when a process group of more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_world_size() -> int:
    """Return the number of training processes (1 without a process group)."""
    return dist.get_world_size() if active() else 1


def get_rank() -> int:
    """Return this process's rank (0 without a process group)."""
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """Return True on the process that writes checkpoints and logs (rank 0)."""
    return get_rank() == 0


def backend_for(device: torch.device) -> str:
    """Return the process-group backend for ``device``: NCCL on CUDA, gloo elsewhere."""
    return "nccl" if device.type == "cuda" else "gloo"


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[str | None]:
    """Join ``torchrun``'s process group for the length of the block; yield a line saying so, or None.

    Outside ``torchrun`` (or with one process) nothing happens and None is yielded. On CUDA each
    process takes the GPU of its ``LOCAL_RANK``.
    """
    if not launched_by_torchrun() or active():
        yield None
        return
    backend = backend_for(device)
    if device.type == "cuda":
        local, gpus = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
        if local >= gpus:
            raise ValueError(
                f"torchrun started process {local} on a machine with {gpus} GPU(s): one process per "
                f"GPU, so pass --nproc-per-node {gpus} (or fewer)."
            )
        torch.cuda.set_device(local)
    dist.init_process_group(backend)
    try:
        yield f"torchrun: {get_world_size()} processes, {backend} backend"
        dist.barrier()  # rank 0's last checkpoint is written before any process leaves
    finally:
        dist.destroy_process_group()


def rank_device(device: torch.device) -> torch.device:
    """Return the device this rank trains on: its own GPU (``cuda:LOCAL_RANK``) under torchrun."""
    if active() and device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", get_rank())))
    return device


def check_config(cfg, device: torch.device, train_frames: int, world: int | None = None) -> None:
    """Raise ``ValueError`` for a ``TrainConfig`` that cannot train on ``world`` processes."""
    world = get_world_size() if world is None else world
    if world == 1:
        return
    if cfg.batch_size % world:
        raise ValueError(
            f"{flag('batch_size')} {cfg.batch_size} is the global batch and must split evenly across the "
            f"{world} processes; pass a multiple of {world}."
        )
    if train_frames < world:
        raise ValueError(f"{train_frames} training frames cannot be shared by {world} processes.")
    if cfg.sync_bn and device.type != "cuda":
        raise ValueError(
            f"{flag('sync_bn')} needs CUDA: PyTorch's SyncBatchNorm runs on GPUs only. Drop it to train on "
            f"{device.type} (batch norm then normalises each process's share of the batch)."
        )
    if cfg.data_path == "device":
        raise ValueError(
            f"{how_to_set('data_path', 'device')} preloads the whole split for one process; under "
            f"torchrun use {how_to_set('data_path', 'loader')} (or auto, which picks it)."
        )


def wrap_model(
    model: nn.Module, device: torch.device, *, sync_bn: bool = False, unused: bool = False
) -> nn.Module | None:
    """Return ``model`` wrapped in ``DistributedDataParallel`` (its batch norm synced if ``sync_bn``).

    ``unused``: some parameters get no gradient in some steps (a frozen encoder).

    Returns None in a single process. The wrapper trains; ``model`` itself (whose parameters it
    shares) is what is evaluated and saved, so checkpoints have the same keys either way.
    """
    if not active():
        return None
    if sync_bn:
        converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # replaces the layers in place
        assert converted is model, "convert_sync_batchnorm returned a new top-level module"
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=unused)


def train_loader(
    train_set: Dataset,
    cfg,
    device: torch.device,
    epoch: int,
    *,
    rank: int | None = None,
    world: int | None = None,
) -> DataLoader:
    """Return this rank's training loader of ``epoch``: its share of every global batch.

    A ``DistributedSampler`` shuffles with seed ``runtime.epoch_seed(cfg.seed, epoch)`` and deals the
    permutation out to the ranks; each rank batches ``cfg.batch_size / world`` of its share, so
    global batch k holds positions ``k * batch_size`` to ``(k + 1) * batch_size - 1`` of the
    permutation, whatever the number of processes (``world=1`` gives the same global batches in
    one process; a run without torchrun shuffles with its own loader). The global random generator is
    seeded with ``epoch_seed(seed, epoch, rank)`` here, because augmentation in the main process draws
    from it: epochs then depend only on the seed, whatever was resumed. ``rank`` and ``world`` default to
    the process group's.
    """
    rank = get_rank() if rank is None else rank
    world = get_world_size() if world is None else world
    # set_epoch adds the epoch to the sampler's seed, which gives epoch_seed(cfg.seed, epoch)
    sampler = DistributedSampler(
        train_set, num_replicas=world, rank=rank, shuffle=True, seed=epoch_seed(cfg.seed, 0), drop_last=True
    )
    sampler.set_epoch(epoch)
    torch.manual_seed(epoch_seed(cfg.seed, epoch, rank))
    return DataLoader(
        train_set,
        batch_size=cfg.batch_size // world,
        sampler=sampler,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        generator=epoch_generator(cfg.seed, epoch, rank),  # the workers' seeds
        drop_last=drops_last(len(train_set), cfg.batch_size),
    )


def shard(dataset: Dataset, *, rank: int | None = None, world: int | None = None) -> Dataset:
    """Return this rank's frames of an evaluation split: every ``world``-th, from ``rank``.

    Unlike a ``DistributedSampler``, no frame is repeated to even out the shares, so the summed
    confusion matrix counts every frame once. The whole split in a single process.
    """
    rank = get_rank() if rank is None else rank
    world = get_world_size() if world is None else world
    if world == 1:
        return dataset
    return Subset(dataset, range(rank, len(dataset), world))


def mean_over_ranks(value: float, device: torch.device) -> float:
    """Return the mean of ``value`` over all ranks (``value`` itself in a single process)."""
    if not active():
        return value
    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.item() / get_world_size()


def main_only(log: Callable) -> Callable:
    """Return ``log`` on rank 0 and a function that prints nothing on the other ranks."""
    return log if is_main() else (lambda *args, **kwargs: None)


def main_first(fn: Callable, *args, **kwargs) -> None:
    """Run ``fn`` on rank 0 only, then wait until it has (every rank, after a barrier)."""
    if is_main():
        fn(*args, **kwargs)
    if active():
        dist.barrier()
