"""The training loop (SPEC §5) and evaluation: the one place where data, model, optimizer, DST
and the run directory meet. Read ``train`` top to bottom.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import TrainConfig
from .data import Batches, load_dataset, split_validation
from .errors import G2GError
from .models import build_model
from .runs import RunDir
from .optim import adam
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
               check=None) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on a batch; returns (loss, logits). ``check(loss)`` runs before the
    backward pass, so a non-finite loss can stop training before it reaches the weights."""
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    if check is not None:
        check(loss)
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
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        n += y.numel()
    model.train(was_training)
    return {"loss": loss_sum / n, "acc": correct / n}


def _progress(iterable, total: int, desc: str, enabled: bool, leave: bool = False):
    if not enabled or tqdm is None:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=leave, dynamic_ncols=True)


def _build_dst(cfg: TrainConfig, model: nn.Module, optimizer, total_steps: int):
    if cfg.dst is None:
        return None
    from .dst import DynamicSparsity

    prune, sep, grow = cfg.dst.partition(":")
    if not sep or not prune or not grow:
        raise G2GError(f"--dst must be PRUNE:GROW (e.g. magnitude:hebbian), got {cfg.dst!r}")
    window = cfg.dst_window if cfg.dst_window == "all" else _positive_int(cfg.dst_window, "--dst-window")
    return DynamicSparsity(
        model, optimizer, prune=prune, grow=grow, interval=cfg.dst_interval, fraction=cfg.dst_fraction,
        decay=cfg.dst_decay, stop=cfg.dst_stop, window=window, total_steps=total_steps,
        score=cfg.dst_score, seed=cfg.seed,
    )


def _positive_int(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise G2GError(f"{what} must be a positive integer or 'all', got {text!r}") from None
    if value < 1:
        raise G2GError(f"{what} must be >= 1, got {value}")
    return value


def train(
    cfg: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    data_dir: str | Path | None = None,
    progress: bool | None = None,
) -> dict:
    """Train one model as ``cfg`` says, writing the run directory ``out``; returns the summary."""
    cfg.resolve()
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if progress is None:
        progress = sys.stderr.isatty()
    run = RunDir(out)

    # Data: in memory as uint8, on the training device; validation carved from train if asked.
    ds = load_dataset(cfg.dataset, data_dir, labels=cfg.labels)
    val = None
    if cfg.val:
        ds, val = split_validation(ds, cfg.val, cfg.seed)
    ds = ds.to(device)
    # Only the held-out images move: val's test split is the same test set ds already carries.
    val_xy = (val.train_x.to(device), val.train_y.to(device)) if val is not None else None
    input_shape = tuple(ds.train_x.shape[1:])

    model = build_model(cfg.model, math.prod(input_shape), ds.num_classes,
                        input_shape=input_shape, **cfg.model_options()).to(device)
    optimizer = adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(ds.train_y.numel() / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    dst = _build_dst(cfg, model, optimizer, total_steps)

    run.start(cfg.to_dict(), str(device), resume)
    start_epoch, step, wall = 0, 0, 0.0
    if resume and run.has_checkpoint():
        state = run.load_checkpoint(map_location=str(device))
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if dst is not None:
                dst.load_state_dict(state["dst"])
        except (KeyError, RuntimeError) as e:
            raise G2GError(f"checkpoint {run.checkpoint_path} does not match this run: {e}") from None
        start_epoch, step, wall = state["epoch"], state["step"], state["wall_time"]
        run.truncate_metrics(start_epoch)

    def batches(split_x, split_y, shuffle, gen=None, augment=False, bs=None):
        return Batches(split_x, split_y, bs or cfg.batch_size, ds.mean, ds.std,
                       shuffle=shuffle, generator=gen, augment=augment)

    test_batches = batches(ds.test_x, ds.test_y, False, bs=1000)
    val_batches = batches(*val_xy, False, bs=1000) if val_xy is not None else None

    model.train()
    epochs = _progress(range(start_epoch, cfg.epochs), cfg.epochs - start_epoch, "epochs", progress, leave=True)
    for epoch in epochs:
        t0 = time.perf_counter()
        train_batches = batches(ds.train_x, ds.train_y, True, _epoch_generator(cfg.seed, epoch), cfg.augment)
        loss_sum, correct, seen, updates = 0.0, 0, 0, []
        def check_finite(loss: torch.Tensor) -> None:
            if not torch.isfinite(loss):
                kept = f"; the last good checkpoint is {run.checkpoint_path}" if run.has_checkpoint() else ""
                raise G2GError(f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, step {step + 1}{kept}")

        for x, y in _progress(train_batches, len(train_batches), f"epoch {epoch + 1}", progress):
            loss, logits = train_step(model, optimizer, x, y, check_finite)
            scheduler.step()
            step += 1
            if dst is not None:
                update = dst.step()
                if update is not None:
                    updates.append(update)
            loss_sum += loss.item() * y.numel()
            correct += (logits.argmax(1) == y).sum().item()
            seen += y.numel()
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_time = time.perf_counter() - t0
        wall += epoch_time
        record = {
            "epoch": epoch + 1, "step": step, "lr": optimizer.param_groups[0]["lr"],
            "train_loss": loss_sum / seen, "train_acc": correct / seen, "epoch_time": epoch_time,
        }
        record.update({f"test_{k}": v for k, v in evaluate(model, test_batches).items()})
        if val_batches is not None:
            record.update({f"val_{k}": v for k, v in evaluate(model, val_batches).items()})
        if updates:
            record["dst"] = updates
        run.log(record)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "step": step, "wall_time": wall}
        if dst is not None:
            state["dst"] = dst.state_dict()
        run.save_checkpoint(state)

    if dst is not None:
        dst.close()
    final = evaluate(model, test_batches)
    summary = {
        "dataset": cfg.dataset, "model": cfg.model, "seed": cfg.seed, "epochs": cfg.epochs,
        "dst": cfg.dst, "test_acc": final["acc"], "test_loss": final["loss"],
        "wall_time": wall, "seconds_per_epoch": wall / cfg.epochs, "steps": step,
        **model_summary(model, input_shape),
    }
    if val_batches is not None:
        summary.update({f"val_{k}": v for k, v in evaluate(model, val_batches).items()})
    run.finish(summary)
    return summary
