"""Training: ``train_one_epoch`` and ``fit``, configured by ``TrainConfig``; validation is ``evaluation``'s.

``fit`` reads as the steps of a run: ``check_out``, ``build_run``, ``resume_run`` (when resuming),
then per epoch ``run_epoch`` and ``save_epoch``. It writes ``last.pt`` after every epoch and ``best.pt``
whenever validation mIoU improves, both atomically, plus ``history.json``. A run killed at any moment
resumes from ``last.pt`` with only the unfinished epoch lost; the data order and augmentation of each
epoch depend only on the seed and the epoch number, so a resumed run sees exactly what an
uninterrupted one would have.

Resuming means "continue this run": only the settings in ``config.RESUMABLE`` may differ from the saved
ones (``epochs`` only where the schedule can follow it); anything else is refused, with the way to
start a new cycle from the checkpoint's weights (``init_from``) instead. A run whose training loss,
validation loss or weights stop being finite stops with ``TrainingDiverged``; the diverged epoch is
never saved.
"""

from __future__ import annotations

import gc
import json
import math
import os
import shlex
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import (
    RUN_FILES,
    atomic_save,
    check_classes,
    load_initial_weights,
    load_training_checkpoint,
    training_checkpoint,
)
from .config import TrainConfig, flag, resume_config
from .data import CamVid, check_labels, pixel_counts
from .device_augment import DeviceAugment, EpochBatches, preload_split
from .ema import ModelEMA
from .encoders import ENCODERS
from .evaluation import collate_eval, evaluate
from .losses import FocalLoss, class_weights
from .model import build_model, describe
from .runtime import (
    LossMeter,
    autocast,
    autocast_dtype,
    configure_backends,
    drops_last,
    epoch_generator,
    get_rng_state,
    grad_scaler,
    pick_device,
    seed_everything,
    set_rng_state,
    sync_lag,
)
from .transforms import Augmentation, EvalPreset, train_preset


def build_datasets(cfg: TrainConfig) -> tuple[CamVid, CamVid]:
    """Return the (train, val) datasets with the config's transforms."""
    train_tf = train_preset(train_augmentation(cfg))
    mean, std = cfg.normalisation()
    train = CamVid(cfg.data, "train", class_set=cfg.class_set, transform=train_tf)
    val = CamVid(
        cfg.data, "val", class_set=train.class_set, transform=EvalPreset(cfg.image_size, mean=mean, std=std)
    )
    check_labels(train)
    check_labels(val)
    return train, val


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    device: torch.device,
    *,
    amp_dtype: torch.dtype | None = None,
    scaler=None,
    channels_last: bool = False,
    max_batches: int | None = None,
    desc: str = "train",
    ema: ModelEMA | None = None,
) -> float:
    """Train for one pass over ``loader`` (or ``max_batches``) and return the mean batch loss.

    Raises ``FloatingPointError`` when the loss is NaN or infinite, naming the batch: at once on the
    CPU, a few steps later on CUDA, where the losses are summed on the GPU and the host never waits
    for a step to finish (``runtime.LossMeter``). ``ema`` follows the weights after every step.
    """
    model.train()
    meter, batches, images_seen = LossMeter(device, sync_lag(device)), 0, 0
    start = time.perf_counter()
    steps = len(loader) if max_batches is None else min(max_batches, len(loader))
    # islice, not a break: a break after `steps` batches would first make the loader load one more
    bar = tqdm(islice(loader, steps), total=steps, desc=desc, leave=False, disable=not distributed.is_main())
    for images, masks in bar:
        images = images.to(device, non_blocking=True)  # (B, 3, H, W)
        masks = masks.to(device, non_blocking=True)  # (B, H, W)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp_dtype):
            logits = model(images)  # (B, C, H, W)
        loss = loss_fn(logits, masks)
        meter.add(loss)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update(getattr(model, "module", model))  # the plain model, also under DDP
        batches, images_seen = batches + 1, images_seen + len(images)
        shown = "-" if meter.last_checked is None else f"{meter.last_checked:.4f}"  # mean so far
        bar.set_postfix(loss=shown, img_s=f"{images_seen / (time.perf_counter() - start):.1f}")
    bar.close()
    return meter.mean()


def param_groups(cfg: TrainConfig, model: nn.Module) -> list[dict]:
    """Return the optimiser's parameter groups: the decoder's at ``lr``, an encoder's at its factor of it.

    Every parameter is in a group from the start, frozen ones included: they have no gradient while
    frozen, so the optimiser leaves them (and their weight decay) alone until they are unfrozen.
    """
    if getattr(model, "encoder", None) is None:
        return [{"params": list(model.parameters()), "lr": cfg.lr}]
    encoder = {id(p) for p in model.encoder.parameters()}
    decoder = [p for p in model.parameters() if id(p) not in encoder]
    return [
        {"params": decoder, "lr": cfg.lr},
        {"params": list(model.encoder.parameters()), "lr": cfg.lr * cfg.encoder_lr_factor},
    ]


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Return the optimiser the config names."""
    groups = param_groups(cfg, model)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {cfg.optimizer!r}.")


def make_scheduler(cfg: TrainConfig, optimizer, steps_per_epoch: int):
    """Return a per-step learning-rate scheduler ("poly", "onecycle") or None ("none")."""
    total = max(cfg.epochs * steps_per_epoch, 1)
    if cfg.schedule == "none":
        return None
    if cfg.schedule == "poly":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: (1 - min(step, total - 1) / total) ** 0.9
        )
    if cfg.schedule == "onecycle":
        peaks = [group["lr"] for group in optimizer.param_groups]  # each group's own peak
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peaks, total_steps=total, pct_start=0.15)
    raise ValueError(f"schedule must be 'none', 'poly' or 'onecycle', got {cfg.schedule!r}.")


def train_loader(train_set, cfg: TrainConfig, device: torch.device, epoch: int) -> DataLoader:
    """Return the shuffled training loader of ``epoch``: its order depends only on the seed and epoch.

    The last, short batch is dropped only when the split holds more than one batch. Under torchrun,
    this process's share of each global batch (``distributed.train_loader``).
    """
    if distributed.active():
        return distributed.train_loader(train_set, cfg, device, epoch)
    drop_last = drops_last(len(train_set), cfg.batch_size)
    return _loader(train_set, cfg, device, shuffle=True, epoch=epoch, drop_last=drop_last)


def uses_device_augment(cfg: TrainConfig, device: torch.device) -> bool:
    """Return True when training batches come from ``device_augment`` rather than a DataLoader.

    ``data_path="auto"`` picks it on CUDA only: a GPU trains the U-Net far faster than a few CPU
    workers decode and augment (``benchmarks/bench_loader.py``), and a split fits in GPU memory
    (250 MB for SegNet's 367 frames, 1 GB for Kaggle's 369). On a CPU the step is the bottleneck
    (the cpu-fast preset trains about 4 images/s on 2 cores; the DataLoader delivers several times
    that), so "auto" keeps the DataLoader there and runs made with it stay reproducible; "device"
    works on any device. The two paths draw different random numbers: a run keeps its path.
    """
    if cfg.data_path not in ("auto", "loader", "device"):
        raise ValueError(f"data_path must be 'auto', 'loader' or 'device', got {cfg.data_path!r}.")
    return cfg.data_path == "device" or (cfg.data_path == "auto" and device.type == "cuda")


def train_augmentation(cfg: TrainConfig) -> Augmentation:
    """Return the augmentation of the config's training frames, on either data path."""
    mean, std = cfg.normalisation()
    return Augmentation(
        cfg.image_size,
        crop=cfg.crop_size,
        scale=cfg.scale,
        hflip=cfg.hflip,
        jitter=cfg.jitter,
        mean=mean,
        std=std,
    )


def build_device_augment(train_set: CamVid, cfg: TrainConfig, device: torch.device) -> DeviceAugment:
    """Preload ``train_set`` onto ``device`` and return its on-device augmentation, as ``train_preset``'s."""
    images, masks = preload_split(train_set, device)
    return DeviceAugment(
        images,
        masks,
        train_augmentation(cfg),
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        drop_last=drops_last(len(train_set), cfg.batch_size),
    )


def train_batches(run: Run, epoch: int) -> DataLoader | EpochBatches:
    """Return the training batches of ``epoch``: on-device ones when the run preloaded its split."""
    if run.augment is not None:
        return run.augment.epoch(epoch)
    return train_loader(run.train_set, run.cfg, run.device, epoch)


def _loader(dataset, cfg: TrainConfig, device, *, shuffle: bool, epoch: int = 0, **kwargs) -> DataLoader:
    generator = epoch_generator(cfg.seed, epoch)
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=shuffle,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        generator=generator,
        persistent_workers=False,
        **kwargs,
    )


@dataclass
class Run:
    """What a training run holds from one epoch to the next: built by ``build_run``, saved per epoch."""

    cfg: TrainConfig
    device: torch.device
    amp_dtype: torch.dtype | None
    train_set: CamVid
    val_loader: DataLoader
    model: nn.Module  # a UNet or an EncoderUNet
    alpha: torch.Tensor | None
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    scaler: torch.amp.GradScaler | None
    start_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best: float = -1.0
    augment: DeviceAugment | None = None  # the preloaded split, when batches are made on the device
    ddp: nn.Module | None = None  # under torchrun: ``model`` in DistributedDataParallel, which trains
    ema: ModelEMA | None = None  # the average of the weights, when ``cfg.ema`` asks for one

    @property
    def scored(self) -> nn.Module:
        """The model that validation scores: the EMA of the weights when there is one."""
        return self.model if self.ema is None else self.ema.module


def build_run(cfg: TrainConfig, *, resuming: dict | None = None, log=print) -> Run:
    """Build everything a run of ``cfg`` needs, from scratch (or from ``cfg.init_from``'s weights).

    ``resuming`` (the checkpoint a run continues from) supplies the class weights, and its weights
    replace ``init_from``'s in ``resume_run``.
    """
    seed_everything(cfg.seed)
    device = distributed.rank_device(pick_device(cfg.device))
    configure_backends(device)
    amp_dtype = autocast_dtype(device, cfg.amp)
    train_set, val_set = build_datasets(cfg)
    distributed.check_config(cfg, device, len(train_set))
    if cfg.max_eval_images is not None:
        val_set = Subset(val_set, range(min(cfg.max_eval_images, len(val_set))))
    val_set = distributed.shard(val_set)  # this process's frames; the whole split in one process
    val_loader = DataLoader(
        val_set, batch_size=cfg.batch_size, num_workers=cfg.num_workers, collate_fn=collate_eval
    )
    starts_fresh = resuming is None and cfg.init_from is None  # else the weights come from a checkpoint
    model = build_model(cfg.unet(train_set.num_classes), pretrained=cfg.pretrained and starts_fresh)
    if cfg.encoder is not None and starts_fresh:
        log(
            f"encoder {cfg.encoder}: "
            + (
                f"ImageNet weights from {ENCODERS[cfg.encoder].weights}"
                if cfg.pretrained
                else "random weights (--no-pretrained)"
            )
        )
    if cfg.init_from is not None and resuming is None:
        fresh = load_initial_weights(model, cfg.init_from, train_set.classes, cfg.data)
        log(f"starting from the weights of {cfg.init_from}")
        if fresh:
            log(f"re-initialised {', '.join(fresh)}: the checkpoint's classes differ from the data's")
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    ema = None if cfg.ema is None else ModelEMA(model, cfg.ema)  # from the initial weights
    # a frozen encoder gets no gradients, which DistributedDataParallel must be told to expect
    ddp = distributed.wrap_model(model, device, sync_bn=cfg.sync_bn, unused=cfg.freeze_epochs > 0)
    alpha = None
    if cfg.alpha is not None and resuming is not None:
        alpha = resuming["alpha"]
    elif cfg.alpha is not None:
        counts, totals = pixel_counts(train_set, with_image_totals=True)
        alpha = class_weights(counts, cfg.alpha, image_counts=totals)
    loss_fn = FocalLoss(gamma=cfg.gamma, alpha=alpha).to(device)
    optimizer = make_optimizer(cfg, model)
    augment = None
    if uses_device_augment(cfg, device) and not distributed.active():
        augment = build_device_augment(train_set, cfg, device)
        log(f"preloaded {len(train_set)} training frames onto {device}; batches are augmented there")
    # the loop's own batches
    steps = len(augment.epoch(0) if augment else train_loader(train_set, cfg, device, epoch=0))
    if cfg.max_train_batches is not None:
        steps = min(steps, cfg.max_train_batches)
    scheduler = make_scheduler(cfg, optimizer, steps)
    scaler = grad_scaler(device, amp_dtype)
    return Run(
        cfg,
        device,
        amp_dtype,
        train_set,
        val_loader,
        model,
        alpha,
        loss_fn,
        optimizer,
        scheduler,
        scaler,
        augment=augment,
        ddp=ddp,
        ema=ema,
    )


def resume_run(run: Run, ckpt: dict) -> None:
    """Restore a run's weights, optimiser, schedule, scaler, random generators and history from ``ckpt``."""
    check_classes(
        ckpt["classes"],
        run.train_set.classes,
        Path(run.cfg.out) / "last.pt",
        run.cfg.data,
        advice=f"resume with {flag('data')} of the run's own classes",
    )
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    if run.scheduler is not None:
        run.scheduler.load_state_dict(ckpt["scheduler"])
    if run.scaler is not None and ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    if run.ema is not None:
        run.ema.load_state_dict(ckpt["ema"])
    set_rng_state(ckpt["rng"])
    run.start_epoch, run.history, run.best = ckpt["epoch"] + 1, list(ckpt["history"]), ckpt["best_miou"]


def run_epoch(run: Run, epoch: int) -> dict:
    """Train ``run`` for epoch ``epoch`` (0-based), validate it when due; return its history entry."""
    cfg = run.cfg
    # Free the last epoch's loader iterators (held in cycles via the progress bar) before new
    # workers fork: inside a Jupyter kernel a late collection in a worker kills the loader.
    gc.collect()
    if hasattr(run.model, "freeze_encoder"):  # frozen for the first freeze_epochs, then trained
        run.model.freeze_encoder(epoch < cfg.freeze_epochs)
    tic = time.perf_counter()
    train_loss = train_one_epoch(
        run.model if run.ddp is None else run.ddp,
        train_batches(run, epoch),
        run.loss_fn,
        run.optimizer,
        run.scheduler,
        run.device,
        amp_dtype=run.amp_dtype,
        scaler=run.scaler,
        channels_last=cfg.channels_last,
        max_batches=cfg.max_train_batches,
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        ema=run.ema,
    )
    train_loss = distributed.mean_over_ranks(train_loss, run.device)  # every process's batches
    val_loss = val_miou = None
    if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
        result = evaluate(
            run.scored,
            run.val_loader,
            run.device,
            run.train_set.num_classes,
            loss_fn=run.loss_fn,
            amp_dtype=run.amp_dtype,
            channels_last=cfg.channels_last,
        )
        result.all_reduce()  # under torchrun: summed over the processes
        val_loss, val_miou = result.loss, result.confusion.miou()
    return {
        "epoch": epoch + 1,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "val_miou": val_miou,
        "lr": run.optimizer.param_groups[0]["lr"],
        "seconds": time.perf_counter() - tic,
    }


def save_epoch(run: Run, epoch: int, improved: bool) -> None:
    """Write ``last.pt`` (and ``best.pt`` when ``improved``) and ``history.json`` into ``cfg.out``."""
    out = Path(run.cfg.out)
    state = training_checkpoint(
        run.model,
        run.train_set,
        cfg=asdict(run.cfg),
        normalisation=run.cfg.normalisation(),
        alpha=run.alpha,
        epoch=epoch,
        history=run.history,
        best_miou=run.best,
        optimizer=run.optimizer,
        scheduler=run.scheduler,
        scaler=run.scaler,
        rng=get_rng_state(),
        ema=None if run.ema is None else run.ema.state_dict(),
    )
    if improved:
        atomic_save(state, out / "best.pt")
    atomic_save(state, out / "last.pt")
    _write_json(run.history, out / "history.json")


class TrainingDiverged(FloatingPointError):
    """Raised when an epoch's training loss, validation loss or weights are not finite.

    ``epoch`` is the 1-based epoch that diverged (never saved); ``best`` the ``best.pt`` of the
    epochs before it, or None; ``lr`` the run's learning rate.
    """

    def __init__(self, message: str, *, epoch: int, best: Path | None, lr: float):
        super().__init__(message)
        self.epoch, self.best, self.lr = epoch, best, lr


LOCK_NAME = ".run.lock"  # inside --out while a run writes there: "<pid> <host>"


def _alive(pid: int) -> bool:
    """Return whether process ``pid`` of this machine runs (True where that cannot be asked)."""
    if sys.platform == "win32":  # os.kill would terminate it there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


@contextmanager
def run_lock(out: str | Path) -> Iterator[None]:
    """Hold ``out`` for this process while the block runs; raise ``ValueError`` if a live run holds it.

    The lock is ``out/.run.lock`` holding this process's id and host, created atomically and removed
    on exit. A lock whose process no longer runs (killed, machine restarted) is stale and replaced.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        yield  # check_out refuses it, naming the file
        return
    path = out / LOCK_NAME
    mine = f"{os.getpid()} {socket.gethostname()}\n"
    try:
        out.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                _refuse_held(out, path)  # returns only when the lock is stale
                path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(mine)
            break
        else:
            raise ValueError(f"cannot take {path}: other runs keep taking it; pass another {flag('out')}.")
    except OSError as err:
        raise OSError(
            f"cannot write to {out}: {err.strerror or err}; pass an {flag('out')} folder you can write to."
        ) from None
    try:
        yield
    finally:
        try:
            if path.read_text() == mine:
                path.unlink()
        except OSError:
            pass


def _refuse_held(out: Path, path: Path) -> None:
    """Raise naming the process that holds ``out``; return if the lock at ``path`` is stale."""
    try:
        pid_text, host = (path.read_text().split() + ["", ""])[:2]
        pid = int(pid_text)
    except (OSError, ValueError):
        return  # unreadable or half-written: no run can be named, so no run is protected
    here = host == socket.gethostname()
    if here and not _alive(pid):
        return
    where = "" if here else f" on {host}"
    raise ValueError(
        f"{out} is in use by the training run of process {pid}{where} (its lock {path}); two runs in one "
        "folder would overwrite each other's checkpoints. Wait for it to finish, or pass another "
        f"{flag('out')}. "
        f"If no training runs there any more, delete {shlex.quote(str(path))} and run again."
    )


def check_out(out: str | Path, *, resume: bool = False, overwrite: bool = False) -> None:
    """Make sure a run can be written into ``out`` before any training: raise if not.

    A folder holding files is refused unless the run continues in it (``resume``) or replaces it
    (``overwrite``: its ``best.pt``, ``last.pt`` and ``history.json`` are deleted first).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(
            f"{flag('out')} {out} is a file, not a folder; pass a folder for the run's checkpoints."
        )
    if out.is_dir():  # the half-written temporaries of a killed run: ours, and no live run writes them
        for name in RUN_FILES:
            for leftover in out.glob(f".{name}.*.tmp"):
                leftover.unlink(missing_ok=True)
        (out / "history.json.tmp").unlink(missing_ok=True)
    held = sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME) if out.is_dir() else []
    if not resume and held:
        if not overwrite:
            held = ", ".join(held[:4])
            raise ValueError(
                f"{out} already holds files ({held}); pass --resume to continue the run in it, "
                f"--overwrite to replace it (fit(..., overwrite=True)), or another {flag('out')}."
            )
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise OSError(
            f"cannot write to {out}: {err.strerror or err}; pass an {flag('out')} folder you can write to."
        ) from None


def saved_config(out: str | Path) -> TrainConfig:
    """Return the config of the run saved in ``out/last.pt``."""
    return TrainConfig.from_dict(load_training_checkpoint(Path(out) / "last.pt")["train_config"])


def divergence(run: Run, entry: dict) -> str | None:
    """Return why an epoch's result cannot be trusted (a non-finite loss or weight), or None."""
    if not math.isfinite(entry["train_loss"]):
        return f"the mean training loss is {entry['train_loss']}"
    if entry["val_loss"] is not None and not math.isfinite(entry["val_loss"]):
        return f"the validation loss is {entry['val_loss']}"
    bad = [name for name, p in run.model.named_parameters() if not bool(p.isfinite().all())]
    if bad:
        return f"the weights hold NaN or infinity ({', '.join(bad[:3])})"
    return None


def _diverged(run: Run, epoch: int, reason: str) -> TrainingDiverged:
    out, lr = Path(run.cfg.out), run.cfg.lr
    best = out / "best.pt" if (out / "best.pt").is_file() else None
    lower, was = f"{flag('lr')} {lr / 10:g}", f"was {flag('lr')} {lr:g}"
    fp32 = f", or train in fp32 ({flag('amp')} off; this run used {run.amp_dtype})"
    amp = "" if run.amp_dtype is None else fp32
    if best is None:
        advice = (
            f"Nothing was saved. Train again with a lower learning rate ({lower}, was {lr:g}) "
            f"and --overwrite{amp}."
        )
    else:
        advice = (
            f"{out / 'last.pt'} holds epoch {epoch}; resuming it would diverge again. Start a new "
            f"cycle from the best weights at a lower learning rate: {flag('init_from')} {best} {lower} "
            f"{flag('out')} NEW_FOLDER ({was}){amp}."
        )
    return TrainingDiverged(
        f"training diverged in epoch {epoch + 1}: {reason}; that epoch was not saved. {advice}",
        epoch=epoch + 1,
        best=best,
        lr=lr,
    )


def fit(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False, log=print) -> list[dict]:
    """Train as ``cfg`` says, checkpointing into ``cfg.out``; return the per-epoch history.

    Each history entry: ``epoch``, ``train_loss``, ``val_loss``, ``val_miou``, ``lr``, ``seconds``.
    With ``resume``, continue the run in ``cfg.out/last.pt``: only the ``RESUMABLE`` settings may
    differ from the saved ones (see ``resume_config``). Without it, ``cfg.out`` must be empty or
    new unless ``overwrite``. Raises ``TrainingDiverged`` when an epoch's losses or weights are not
    finite; that epoch is never saved.
    """
    out, ckpt = Path(cfg.out), None
    log = distributed.main_only(log)  # under torchrun only rank 0 logs and writes
    if resume:
        ckpt = load_training_checkpoint(out / "last.pt")
        cfg = resume_config(cfg, TrainConfig.from_dict(ckpt["train_config"]), ckpt["epoch"] + 1)
    with run_lock(out) if distributed.is_main() else nullcontext():  # one run per folder
        distributed.main_first(check_out, out, resume=resume, overwrite=overwrite)
        return _train(cfg, ckpt, log)


def _class_set_note(dataset: CamVid) -> str:
    """Say which classes a run learns and how to pick the other set, for the line a run starts with."""
    if dataset.layout == "folder":
        return f"own classes: the {dataset.num_classes} of the folder's classes.csv"
    if dataset.layout != "kaggle":
        return "camvid11: the 11 classes of the SegNet layout"
    if dataset.class_set == "camvid32":
        return (
            f"camvid32: the 32 classes of the Kaggle layout; {flag('class_set')} camvid11 trains the 11 "
            "SegNet classes the notebooks and the shipped model use"
        )
    return (
        "camvid11: the Kaggle layout's 32 classes grouped into SegNet's 11; "
        f"{flag('class_set')} camvid32 for all 32"
    )


def _train(cfg: TrainConfig, ckpt: dict | None, log) -> list[dict]:
    """Build the run (resumed from ``ckpt`` if given), train its epochs and return the history."""
    out = Path(cfg.out)
    run = build_run(cfg, resuming=ckpt, log=log)
    if ckpt is not None:
        resume_run(run, ckpt)
        log(f"resumed {out / 'last.pt'} after epoch {run.start_epoch} (best val mIoU {run.best:.4f})")
    classes = _class_set_note(run.train_set)
    log(
        f"training {describe(run.model)} "
        f"on {len(run.train_set)} {run.train_set.split} frames of {cfg.data} ({classes}), "
        f"device {run.device}, autocast {run.amp_dtype}, epochs {run.start_epoch + 1}..{cfg.epochs}"
    )
    for epoch in range(run.start_epoch, cfg.epochs):
        try:
            entry = run_epoch(run, epoch)
        except FloatingPointError as err:
            raise _diverged(run, epoch, str(err)) from None
        reason = divergence(run, entry)
        if reason is not None:
            raise _diverged(run, epoch, reason)
        run.history.append(entry)
        val_miou = entry["val_miou"]
        improved = val_miou is not None and val_miou > run.best  # a NaN compares False
        run.best = val_miou if improved else run.best
        if distributed.is_main():
            save_epoch(run, epoch, improved)
        miou_text = "-" if val_miou is None else f"{val_miou:.4f}"
        val_loss = entry["val_loss"]
        log(
            f"epoch {epoch + 1}/{cfg.epochs}: train loss {entry['train_loss']:.4f}, val loss "
            f"{'-' if val_loss is None else f'{val_loss:.4f}'}, val mIoU {miou_text}"
            f"{' (best)' if improved else ''}, {entry['seconds']:.0f} s"
        )
    return run.history


def _write_json(obj, path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)
