"""A trained model back from its run directory (SPEC §8): ``load_model`` and ``g2g eval``.

The architecture comes from ``config.json`` (the same builder and seed as in training), the
state from ``checkpoint.pt`` through the checked loader: masks as DST left them, weights, and
the values after the checkpoint's epoch. The checkpoint of a finished run is its final model; a
run still training or stopped early has the checkpoint of an earlier epoch, and ``g2g eval`` says
which (and refuses a run still training unless asked).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .config import Config
from .data import Batches
from .data.datasets import dataset_info
from .errors import G2GError
from .models import build_from_config
from .records import Checkpoint
from .runs import CHECKPOINT, RunDir, RunStatus, load_checkpoint, load_state, read_config, read_summary
from .train import evaluate, resolve_device, run_data


def untrained_model(cfg: Config) -> nn.Module:
    """The model a run's ``config.json`` builds before training: its dataset's input shape and the
    classes of its label set, the same builder and seed as training (``build_from_config``)."""
    info = dataset_info(cfg.data.dataset)
    return build_from_config(cfg, info.shape, info.classes_of(cfg.data.labels))


def _load(run_dir: Path, device: torch.device) -> tuple[nn.Module, Config, Checkpoint]:
    cfg = read_config(run_dir)
    model = untrained_model(cfg)
    path = run_dir / CHECKPOINT
    if not path.exists():
        raise G2GError(f"{run_dir} has no {CHECKPOINT} (checkpoints are not committed with results; "
                       "re-run it with g2g train --config)")
    ckpt = load_checkpoint(path, str(device))
    load_state(model, ckpt.model, f"checkpoint {path}")
    return model.to(device).eval(), cfg, ckpt


def load_model(run_dir: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """The ``nn.Module`` of a run directory's checkpoint, in eval mode, on ``map_location``
    (the trained model once the run has finished; ``g2g eval`` tells which epoch a checkpoint holds)."""
    return _load(Path(run_dir), resolve_device(str(map_location)))[0]


@dataclass(frozen=True)
class Evaluation:
    """A run's checkpoint evaluated on the test set, with what the checkpoint holds."""

    run: Path
    acc: float
    loss: float
    epoch: int  # epochs the checkpoint holds
    epochs: int  # epochs the run was configured for
    status: RunStatus  # done | busy (still training) | partial (stopped early)
    summary_test_acc: float | None  # what summary.json recorded, for a finished run

    def line(self) -> str:
        """``g2g eval``'s output line."""
        text = f"{self.run}: test accuracy {100 * self.acc:.2f}%, loss {self.loss:.4f}; checkpoint after epoch " \
               f"{self.epoch} of {self.epochs}"
        if self.status == "busy":
            return text + " (the run is still training)"
        if self.status != "done":
            return text + f" (the run is unfinished; continue it with g2g train --resume --out {self.run})"
        if self.summary_test_acc is not None:
            text += f" (summary.json: {100 * self.summary_test_acc:.2f}%)"
        return text


def evaluate_run(run_dir: str | Path, data_dir: str | Path | None = None, device: str = "cpu",
                 allow_partial: bool = False) -> Evaluation:
    """Test loss and accuracy of a run's checkpoint, beside what its summary.json recorded.

    A run another process is still training is refused unless ``allow_partial`` (its checkpoint
    is an earlier epoch's model, not the run's result)."""
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    run = RunDir(run_dir)
    status = run.status()
    if status == "busy" and not run.has_checkpoint():
        raise G2GError(f"{run_dir} is still training ({run.holder()}) and has no checkpoint yet (no epoch has "
                       "finished)")
    if status == "partial" and not run.has_checkpoint():
        raise G2GError(f"{run_dir} has no checkpoint: it stopped before its first epoch finished (continue it "
                       f"with g2g train --resume --out {run_dir})")
    model, cfg, ckpt = _load(run_dir, dev)
    epochs = ckpt.epochs or cfg.train.epochs or ckpt.epoch
    if status == "busy" and not allow_partial:
        raise G2GError(f"{run_dir} is still training ({run.holder()}): its checkpoint holds epoch {ckpt.epoch} of "
                       f"{epochs}; wait for it to finish, or pass --allow-partial to evaluate that checkpoint")
    ds = run_data(cfg, data_dir)[0].to(dev)  # with the normalisation of the run's own training images
    result = evaluate(model, Batches(ds.test_x, ds.test_y, 1000, ds.mean, ds.std, shuffle=False, generator=None))
    recorded = None
    if status == "done":
        recorded = read_summary(run_dir).test_acc
    return Evaluation(run_dir, result["acc"], result["loss"], ckpt.epoch, epochs, status, recorded)
