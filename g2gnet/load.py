"""A trained model back from its run directory (SPEC §8): ``load_model`` and ``g2g eval``.

The architecture comes from ``config.json`` (the same builder and seed as in training), the
state from ``checkpoint.pt`` through the checked loader: masks as DST left them, weights, and
the final epoch's values (the checkpoint of a finished run is its final model).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn

from .data import Batches, load_dataset
from .data.datasets import dataset_info
from .errors import G2GError
from .models import build_model
from .runs import CHECKPOINT, load_checkpoint, load_state, read_config, read_json
from .train import evaluate, resolve_device


def load_model(run_dir: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """The trained ``nn.Module`` of a run directory, in eval mode, on ``map_location``."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    info = dataset_info(cfg.data.dataset)
    num_classes = 20 if cfg.data.labels == "coarse" else info.num_classes
    model = build_model(cfg.model.name, math.prod(info.shape), num_classes, input_shape=info.shape,
                        seed=cfg.train.seed, **cfg.model.options())
    path = run_dir / CHECKPOINT
    if not path.exists():
        raise G2GError(f"{run_dir} has no {CHECKPOINT} (checkpoints are not committed with results; "
                       "re-run it with g2g train --config)")
    state = load_checkpoint(path, str(map_location))
    load_state(model, state.get("model"), f"checkpoint {path}")
    return model.to(map_location).eval()


def evaluate_run(run_dir: str | Path, data_dir: str | Path | None = None, device: str = "cpu") -> dict:
    """Test loss and accuracy of a run's model, beside what its summary.json recorded."""
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    cfg = read_config(run_dir)
    model = load_model(run_dir, dev)
    ds = load_dataset(cfg.data.dataset, data_dir, labels=cfg.data.labels)
    if cfg.data.val:  # the normalisation statistics of the run's own training images
        from .data import split_validation

        ds, _ = split_validation(ds, cfg.data.val, cfg.train.seed)
    ds = ds.to(dev)
    result = evaluate(model, Batches(ds.test_x, ds.test_y, 1000, ds.mean, ds.std, shuffle=False, generator=None))
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        result["summary_test_acc"] = read_json(summary_path).get("test_acc")
    return result
