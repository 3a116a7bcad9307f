"""The training loop (SPEC §5) and evaluation: the one place where data, model, optimizer, DST
and the run directory meet. Read ``train`` and ``_fit`` top to bottom.

Under torchrun every rank runs this loop on its share of each global batch (``distributed``);
rank 0 alone writes the run directory.
"""

from __future__ import annotations

import inspect
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from . import distributed
from .config import Config
from .data import Batches, Dataset, load_dataset, split_validation
from .data.datasets import dataset_info
from .distributed import World
from .dst import DynamicSparsity
from .errors import G2GError
from .layers import derived_buffers
from .models import build_model
from .optim import adam
from .runs import RunDir, TensorBoard, load_state
from .stats import model_summary

try:  # progress bars are a nicety, never a requirement
    from tqdm import tqdm
except ImportError:  # pragma: no cover
    tqdm = None


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


def _progress(iterable, total: int, desc: str, enabled: bool, leave: bool = False):
    if not enabled or tqdm is None:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=leave, dynamic_ncols=True)


class Interrupted(G2GError):
    """Ctrl-C during training: says which checkpoint (if any) a ``--resume`` continues from."""


def _build_model(cfg: Config, input_shape: tuple[int, ...], num_classes: int, device: torch.device) -> nn.Module:
    try:
        return build_model(cfg.model.name, math.prod(input_shape), num_classes, input_shape=input_shape,
                           seed=cfg.train.seed, **cfg.model.options()).to(device)
    except (MemoryError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and "alloc" not in str(e).lower() and "memory" not in str(e).lower():
            raise
        widths = [math.prod(input_shape), *cfg.model.hidden, num_classes]
        dense = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
        raise G2GError(f"cannot allocate model {cfg.model.name!r} with hidden {list(cfg.model.hidden)}: its "
                       f"{dense:,} dense weights need about {4 * dense / 2**30:.1f} GiB as float32 on "
                       f"{device}") from None


def train(
    cfg: Config,
    out: str | Path,
    *,
    resume: bool = False,
    data_dir: str | Path | None = None,
    progress: bool | None = None,
    tensorboard: bool = False,
) -> dict:
    """Train one model as ``cfg`` says, writing the run directory ``out``; returns the summary.

    Under torchrun (``WORLD_SIZE`` > 1) this is one rank of a data-parallel run: the global batch
    ``cfg.train.batch_size`` is split over the ranks and rank 0 writes the run directory.
    """
    info = dataset_info(cfg.data.dataset)
    cfg = cfg.resolve(info.epochs, info.augment)
    world = distributed.world_from_env()
    if cfg.train.batch_size < world.size:
        raise G2GError(f"batch size {cfg.train.batch_size} is smaller than the {world.size} processes")
    device = distributed.init(world, resolve_device(cfg.train.device))
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if progress is None:
        progress = world.main and sys.stderr.isatty()
    run = RunDir(out)
    try:
        if world.main:
            run.open(cfg, resume)
        distributed.barrier()  # the other ranks read what rank 0 checked
        board = TensorBoard(run.path) if tensorboard and world.main else None
        return _fit(cfg, run, world, device, resume, data_dir, progress, board)
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


def _load_data(cfg: Config, data_dir, device: torch.device) -> _Data:
    # In memory as uint8, on the training device; validation carved from train if asked.
    ds = load_dataset(cfg.data.dataset, data_dir, labels=cfg.data.labels)
    val = None
    if cfg.data.val:
        ds, val = split_validation(ds, cfg.data.val, cfg.train.seed)
    ds = ds.to(device)
    # Only the held-out images move: val's test split is the same test set ds already carries.
    val_xy = (val.train_x.to(device), val.train_y.to(device)) if val is not None else None
    return _Data(ds, val_xy, tuple(ds.train_x.shape[1:]))


def _fit(cfg: Config, run: RunDir, world: World, device: torch.device, resume: bool, data_dir,
         progress: bool, board) -> dict:
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
        dst = DynamicSparsity.from_config(model, optimizer, cfg.dst, total_steps=total_steps, seed=tc.seed)

    start_epoch, step, wall = 0, 0, 0.0
    if resume and run.has_checkpoint():
        state = run.load_checkpoint(map_location=str(device))
        what = f"checkpoint {run.checkpoint_path}"
        load_state(model, state.get("model"), what)
        load_state(optimizer, state.get("optimizer"), what)
        load_state(scheduler, state.get("scheduler"), what)
        if dst is not None:
            load_state(dst, state.get("dst"), what)
        try:
            start_epoch, step, wall = int(state["epoch"]), int(state["step"]), float(state["wall_time"])
        except (KeyError, TypeError, ValueError):
            raise G2GError(f"{what} has no epoch/step/wall_time record") from None
        if world.main:
            run.truncate_metrics(start_epoch)
    if world.main:
        run.record_start(str(device), start_epoch if resume else None, world.size)
    net = model if world.size == 1 else _ddp(model, device)

    test_batches = data.batches(ds.test_x, ds.test_y, 1000)
    val_batches = data.batches(*data.val_xy, 1000) if data.val_xy is not None else None
    model.train()
    done = start_epoch  # epochs finished and checkpointed
    epochs = _progress(range(start_epoch, tc.epochs), tc.epochs - start_epoch, "epochs", progress, leave=True)
    try:
        for epoch in epochs:
            t0 = time.perf_counter()
            train_batches = data.batches(ds.train_x, ds.train_y, tc.batch_size, _epoch_generator(tc.seed, epoch),
                                         cfg.data.augment)
            # Sums stay on the device and are read once per epoch: a GPU never waits for the host.
            sums = torch.zeros(2, dtype=torch.float64, device=device)  # summed loss, correct
            seen, updates = 0, []
            for x, y in _progress(train_batches, len(train_batches), f"epoch {epoch + 1}", progress):
                n_global = y.numel()
                x, y = world.shard(x), world.shard(y)  # every rank augments the global batch alike
                scale = None if world.size == 1 else world.size / n_global
                loss, logits = train_step(net, optimizer, x, y, scale)
                scheduler.step()
                step += 1
                if dst is not None:
                    update = dst.step()
                    if update is not None:
                        updates.append(update)
                        if board is not None:
                            board.log_update(update)
                sums += torch.stack([loss.detach().double() * (n_global / world.size),
                                     (logits.argmax(1) == y).sum().double()])
                seen += n_global
            distributed.all_reduce_sum_([sums])
            if not torch.isfinite(sums[0]):  # the last checkpoint was written before this epoch
                kept = f"; the last good checkpoint is {run.checkpoint_path}" if run.has_checkpoint() else ""
                raise G2GError(f"non-finite loss in epoch {epoch + 1} (by step {step}){kept}")
            if device.type == "cuda":
                torch.cuda.synchronize()
            epoch_time = time.perf_counter() - t0
            wall += epoch_time
            loss_sum, correct = sums.tolist()
            record = {"epoch": epoch + 1, "step": step, "lr": optimizer.param_groups[0]["lr"],
                      "train_loss": loss_sum / seen, "train_acc": correct / seen, "epoch_time": epoch_time}
            record.update({f"test_{k}": v for k, v in evaluate(model, test_batches).items()})
            if val_batches is not None:
                record.update({f"val_{k}": v for k, v in evaluate(model, val_batches).items()})
            if updates:
                record["dst"] = updates
            if world.main:
                run.log(record)
                if board is not None:
                    board.log_epoch(record)
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "step": step, "wall_time": wall}
                if dst is not None:
                    state["dst"] = dst.state_dict()
                run.save_checkpoint(state)
            done = epoch + 1
    except KeyboardInterrupt:
        kept = (f"the checkpoint after epoch {done} is kept; continue with --resume --out {run.path}"
                if done > 0 and run.has_checkpoint() else "no epoch had finished, so there is no checkpoint")
        raise Interrupted(f"interrupted during epoch {done + 1}; {kept}") from None
    finally:
        if board is not None:
            board.close()

    if dst is not None:
        dst.close()
    final = evaluate(model, test_batches)
    summary = {
        "dataset": cfg.data.dataset, "model": cfg.model.name, "seed": tc.seed, "epochs": tc.epochs,
        "dst": cfg.dst.label, "test_acc": final["acc"], "test_loss": final["loss"],
        "wall_time": wall, "seconds_per_epoch": wall / tc.epochs, "steps": step, "processes": world.size,
        **model_summary(model, data.input_shape),
    }
    if val_batches is not None:
        summary.update({f"val_{k}": v for k, v in evaluate(model, val_batches).items()})
    if world.main:
        run.finish(summary)
    return summary
