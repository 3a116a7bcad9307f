"""The training loop (SPEC §5) and evaluation: the one place where data, model, optimizer, DST
and the run directory meet. Read ``train``, ``_fit`` and ``_epochs`` top to bottom.

A start first checks everything it can without data (``check_config``), then loads the data,
builds the model, optimizer and DST and reads a resumed run's checkpoint, and only then writes to
the run directory: a start that fails leaves nothing that blocks a corrected retry.

Under torchrun every rank runs this loop on its share of each global batch (``distributed``);
rank 0 alone writes the run directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import math
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from . import distributed
from .config import Config, DSTConfig
from .data import Batches, Dataset, load_dataset, split_validation
from .data.datasets import check_labels, dataset_info
from .distributed import World
from .dst import GROW, PRUNE, DynamicSparsity
from .errors import G2GError, lookup
from .layers import derived_buffers
from .models import build_from_config, check_options, used_options
from .options import option_name
from .optim import adam
from .progress import Progress, bar, choose_mode, show_epoch
from .records import Checkpoint, DSTUpdate, EpochRecord, Summary
from .runs import RunDir, TensorBoard, load_state
from .stats import model_summary


def resolve_device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise G2GError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise G2GError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on a batch; returns (loss, logits).

    ``scale``: the loss is ``sum of cross-entropies * scale`` (data parallel: world size / global
    batch, so that DDP's average over ranks is the global batch's mean); default: the mean."""
    logits = model(x)
    if scale is None:
        loss = F.cross_entropy(logits, y)
    else:
        loss = F.cross_entropy(logits, y, reduction="sum") * scale
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss, logits


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    # One generator per (seed, epoch): data order and augmentation of an epoch do not depend on
    # what ran before, so a run resumed at an epoch boundary sees exactly the same batches.
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def _dropout_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of torch's global generators for epoch ``epoch`` of process ``rank``: what dropout
    (and anything else a model draws without a generator) uses. Like ``_epoch_generator`` it
    depends on (seed, epoch) only, so a run resumed at an epoch boundary draws the masks of the
    uninterrupted run; each rank of a data-parallel run draws its own. A hash, not the data
    order's ``seed * 1_000_003 + epoch``: the CPU generator would replay the shuffle's stream."""
    digest = hashlib.sha256(f"g2gnet dropout {seed} {epoch} {rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches) -> dict[str, float]:
    """Mean cross-entropy and accuracy over a whole split."""
    was_training = model.training
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for x, y in batches:
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
        n += y.numel()
    model.train(was_training)
    return {"loss": float(loss_sum) / n, "acc": int(correct) / n}


class Interrupted(G2GError):
    """Ctrl-C (or SIGTERM) during training: says which checkpoint (if any) a ``--resume`` continues
    from."""

    exit_code = 130


def check_config(cfg: Config) -> Config:
    """``cfg`` with its dataset's defaults filled in, after every check that needs neither data
    nor weights: the dataset, label set, model, front end and DST criteria names and what the
    model can use. ``train`` calls it first, ``g2g sweep`` on every cell before any runs.
    Options that neither the model nor a static mask reads are recorded at their defaults, with a
    warning (``_used``)."""
    info = dataset_info(cfg.data.dataset)
    check_labels(cfg.data.dataset, cfg.data.labels)
    check_options(cfg.model, info.shape)
    if cfg.dst.enabled:
        lookup(PRUNE, cfg.dst.prune, "prune criterion")
        lookup(GROW, cfg.dst.grow, "grow criterion")
    return _used(cfg).resolve(info.epochs, info.augment)


def _used(cfg: Config) -> Config:
    """``cfg`` with the options its run does not read at their defaults: the model's unused ones
    (``models.used_options``: dense ignores --groups and --p-inter, ...) and every DST knob of a
    static mask. Recorded as given, they labelled the run (its config.json, its row in a report)
    with settings that did not shape it, and a grid over them trained one model under several
    names (``g2g sweep`` now says so before anything runs)."""
    model, unused = used_options(cfg.model)
    dst = cfg.dst if cfg.dst.enabled else DSTConfig()
    dst_unused = [f.name for f in dataclasses.fields(DSTConfig) if getattr(cfg.dst, f.name) != getattr(dst, f.name)]
    if not unused and not dst_unused:
        return cfg
    what = (f"{cfg.model.name} with a static mask" if dst_unused else cfg.model.name) if unused \
        else "a static mask (no --dst rule)"
    flags = [option_name("model", k) for k in unused] + [option_name("dst", k) for k in dst_unused]
    warnings.warn(f"{what} does not use {', '.join(flags)}: the run records their defaults", stacklevel=3)
    return dataclasses.replace(cfg, model=model, dst=dst)


def _build_model(cfg: Config, input_shape: tuple[int, ...], num_classes: int, device: torch.device) -> nn.Module:
    try:
        return build_from_config(cfg, input_shape, num_classes).to(device)
    except (MemoryError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and "alloc" not in str(e).lower() and "memory" not in str(e).lower():
            raise
        widths = [math.prod(input_shape), *cfg.model.hidden, num_classes]
        dense = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
        raise G2GError(f"cannot allocate model {cfg.model.name!r} with hidden {list(cfg.model.hidden)}: its "
                       f"{dense:,} dense weights need about {4 * dense / 2**30:.1f} GiB as float32 on "
                       f"{device}") from None


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM ends a run like Ctrl-C, with one line naming the checkpoint that is kept: a sweep
    stops its workers with it, and torchrun stops the other ranks with it when one has failed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def train(
    cfg: Config,
    out: str | Path,
    *,
    resume: bool = False,
    data_dir: str | Path | None = None,
    progress: Progress | bool | None = None,
    tensorboard: bool = False,
) -> Summary:
    """Train one model as ``cfg`` says, writing the run directory ``out``; returns the summary.

    ``progress``: ``"bars"`` (tqdm), ``"lines"`` (one line per epoch on stderr) or ``"off"``;
    default: bars on a terminal, lines otherwise.

    Under torchrun (``WORLD_SIZE`` > 1) this is one rank of a data-parallel run: the global batch
    ``cfg.train.batch_size`` is split over the ranks and rank 0 writes the run directory.
    """
    cfg = check_config(cfg)
    world = distributed.world_from_env()
    if cfg.train.batch_size < world.size:
        raise G2GError(f"batch size {cfg.train.batch_size} is smaller than the {world.size} processes")
    if tensorboard and world.main:
        TensorBoard.writer_class()  # the optional package, checked before anything is written
    device = distributed.init(world, resolve_device(cfg.train.device))
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    mode = choose_mode(progress, world.main)
    run = RunDir(out)
    # Training seeds torch's global generators every epoch (_dropout_seed); the caller's state
    # is restored afterwards.
    # (torch.manual_seed seeds every visible GPU: each one's state is restored)
    rng_devices = list(range(torch.cuda.device_count())) if device.type == "cuda" else []
    try:
        with _sigterm_as_interrupt(), torch.random.fork_rng(devices=rng_devices):
            if world.main:
                run.open(cfg, resume)
            distributed.barrier()  # the other ranks read what rank 0 checked
            return _fit(cfg, run, world, device, resume, data_dir, mode, tensorboard and world.main)
    finally:
        run.close()
        distributed.close()


def _ddp(model: nn.Module, device: torch.device) -> nn.Module:
    # Masks and layouts need no broadcast, at start or before each forward: identical by
    # construction (same seed), and DST checks its masks across ranks after every update. (gloo
    # cannot broadcast the int16 column indices anyway.)
    model._ddp_params_and_buffers_to_ignore = derived_buffers(model)
    kw = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(
        DistributedDataParallel.__init__).parameters else {"broadcast_buffers": False})
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None, **kw)


@dataclass
class _Data:
    ds: Dataset
    val_xy: tuple[torch.Tensor, torch.Tensor] | None
    input_shape: tuple[int, ...]

    def batches(self, x, y, batch_size: int, gen=None, augment: bool = False) -> Batches:
        return Batches(x, y, batch_size, self.ds.mean, self.ds.std, shuffle=gen is not None, generator=gen,
                       augment=augment)


def run_data(cfg: Config, data_dir: str | Path | None) -> tuple[Dataset, Dataset | None]:
    """A run's data in memory (uint8, on the CPU) as its training sees it: the dataset in its label
    set and, with ``cfg.data.val``, the validation images held out of the training set (the
    normalisation statistics are then those of the remaining training images)."""
    ds = load_dataset(cfg.data.dataset, data_dir, labels=cfg.data.labels)
    if not cfg.data.val:
        return ds, None
    return split_validation(ds, cfg.data.val, cfg.train.seed)


def _load_data(cfg: Config, data_dir, device: torch.device) -> _Data:
    ds, val = run_data(cfg, data_dir)
    ds = ds.to(device)
    # Only the held-out images move: val's test split is the same test set ds already carries.
    val_xy = (val.train_x.to(device), val.train_y.to(device)) if val is not None else None
    return _Data(ds, val_xy, tuple(ds.train_x.shape[1:]))


def _fit(cfg: Config, run: RunDir, world: World, device: torch.device, resume: bool, data_dir,
         mode: Progress, tensorboard: bool) -> Summary:
    tc = cfg.train
    data = _load_data(cfg, data_dir, device)
    ds = data.ds
    model = _build_model(cfg, data.input_shape, ds.num_classes, device)
    optimizer = adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    steps_per_epoch = math.ceil(ds.train_y.numel() / tc.batch_size)
    total_steps = steps_per_epoch * tc.epochs
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    dst = None
    if cfg.dst.enabled:  # before DDP: it fixes the parameter shapes DDP's buckets then keep
        dst = DynamicSparsity(model, optimizer, cfg.dst, total_steps=total_steps, seed=tc.seed)

    start_epoch, step, wall = 0, 0, 0.0
    if resume and run.has_checkpoint():
        ckpt = run.load_checkpoint(map_location=str(device))
        what = f"checkpoint {run.checkpoint_path}"
        load_state(model, ckpt.model, what)
        load_state(optimizer, ckpt.optimizer, what)
        load_state(scheduler, ckpt.scheduler, what)
        if dst is not None:
            load_state(dst, ckpt.dst, what)
        start_epoch, step, wall = ckpt.epoch, ckpt.step, ckpt.wall_time
    # metrics.jsonl must hold every epoch up to the checkpoint (read on every rank alike)
    kept = run.resumable_metrics(start_epoch) if resume else None
    if world.main:  # every check has passed: the run directory is written from here on
        if kept is not None:
            run.truncate_metrics(kept)
        changed = run.begin(cfg, str(device), start_epoch if resume else None, world.size)
        if changed is not None:
            print(f"g2gnet: note: {run.path} resumes under changed code (source {changed[0][:12]} at its last "
                  f"start, now {changed[1][:12]}): its results mix code versions", file=sys.stderr)
    net = model if world.size == 1 else _ddp(model, device)
    board = TensorBoard(run.path) if tensorboard else None
    try:
        wall, step = _epochs(cfg, run, world, device, data, net, model, optimizer, scheduler, dst, board, mode,
                             start_epoch, step, wall)
    finally:
        if board is not None:
            board.close()
    if dst is not None:
        dst.close()
    return _finish(cfg, run, world, data, model, wall, step)


def _epochs(cfg: Config, run: RunDir, world: World, device: torch.device, data: _Data, net: nn.Module,
            model: nn.Module, optimizer, scheduler, dst, board, mode: Progress, start_epoch: int,
            step: int, wall: float) -> tuple[float, int]:
    """The epochs from ``start_epoch`` on, each logged and checkpointed; returns (wall, step)."""
    tc, ds = cfg.train, data.ds
    test_batches = data.batches(ds.test_x, ds.test_y, 1000)
    val_batches = data.batches(*data.val_xy, 1000) if data.val_xy is not None else None
    model.train()
    done = start_epoch  # epochs finished and checkpointed
    seconds: list[float] = []  # of each epoch of this start, evaluation included (for the ETA)
    epochs = bar(range(start_epoch, tc.epochs), tc.epochs - start_epoch, "epochs", mode, leave=True)
    try:
        for epoch in epochs:
            t0 = time.perf_counter()
            torch.manual_seed(_dropout_seed(tc.seed, epoch, world.rank))  # dropout: CPU and CUDA generators
            train_batches = data.batches(ds.train_x, ds.train_y, tc.batch_size, _epoch_generator(tc.seed, epoch),
                                         cfg.data.augment)
            # Sums stay on the device and are read once per epoch: a GPU never waits for the host.
            sums = torch.zeros(2, dtype=torch.float64, device=device)  # summed loss, correct
            seen, updates = 0, []
            for x, y in bar(train_batches, len(train_batches), f"epoch {epoch + 1}", mode):
                n_global = y.numel()
                x, y = world.shard(x), world.shard(y)  # every rank augments the global batch alike
                scale = None if world.size == 1 else world.size / n_global
                loss, logits = train_step(net, optimizer, x, y, scale)
                scheduler.step()
                step += 1
                if dst is not None:
                    update = dst.step()
                    if update is not None:
                        updates.append(DSTUpdate.from_dict(update, f"the DST update at step {step}"))
                        if board is not None:
                            board.log_update(updates[-1])
                sums += torch.stack([loss.detach().double() * (n_global / world.size),
                                     (logits.argmax(1) == y).sum().double()])
                seen += n_global
            distributed.all_reduce_sum_([sums])
            if not torch.isfinite(sums[0]):  # the last checkpoint was written before this epoch
                raise G2GError(f"non-finite loss in epoch {epoch + 1} (by step {step}); {run.kept()}")
            if device.type == "cuda":
                torch.cuda.synchronize()
            epoch_time = time.perf_counter() - t0
            wall += epoch_time
            loss_sum, correct = sums.tolist()
            test = evaluate(model, test_batches)
            val = evaluate(model, val_batches) if val_batches is not None else {}
            record = EpochRecord(epoch=epoch + 1, step=step, lr=optimizer.param_groups[0]["lr"],
                                 train_loss=loss_sum / seen, train_acc=correct / seen, epoch_time=epoch_time,
                                 test_loss=test["loss"], test_acc=test["acc"], val_loss=val.get("loss"),
                                 val_acc=val.get("acc"), dst=tuple(updates))
            # Every rank: DST's evidence of a window that spans this checkpoint is each rank's own.
            dst_state = dst.state_dict() if dst is not None else None
            if world.main:
                run.log(record)
                if board is not None:
                    board.log_epoch(record)
                run.save_checkpoint(Checkpoint(
                    model=model.state_dict(), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                    epoch=epoch + 1, step=step, wall_time=wall, epochs=tc.epochs, dst=dst_state))
            else:
                run.checkpoint_epoch = epoch + 1  # rank 0 wrote it
            done = epoch + 1
            seconds.append(time.perf_counter() - t0)
            show_epoch(record, tc.epochs, seconds[-1], sum(seconds) / len(seconds) * (tc.epochs - done),
                                mode)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted during epoch {done + 1}; {run.kept()}") from None
    except RuntimeError as e:
        reason = distributed.lost_peer(e)
        if reason is None:
            raise
        raise G2GError(f"another process of this run is gone (during epoch {done + 1}: {reason}); "
                       f"{run.kept()}") from None
    return wall, step


def _finish(cfg: Config, run: RunDir, world: World, data: _Data, model: nn.Module, wall: float,
            step: int) -> Summary:
    """The final model's test (and validation) results and costs: summary.json."""
    tc, ds = cfg.train, data.ds
    final = evaluate(model, data.batches(ds.test_x, ds.test_y, 1000))
    val = evaluate(model, data.batches(*data.val_xy, 1000)) if data.val_xy is not None else {}
    summary = Summary(
        dataset=cfg.data.dataset, model=cfg.model.name, seed=tc.seed, epochs=tc.epochs, dst=cfg.dst.label,
        test_acc=final["acc"], test_loss=final["loss"], wall_time=wall, seconds_per_epoch=wall / tc.epochs,
        steps=step, processes=world.size, val_acc=val.get("acc"), val_loss=val.get("loss"),
        **model_summary(model, data.input_shape))
    if world.main:
        run.finish(summary)
    return summary
