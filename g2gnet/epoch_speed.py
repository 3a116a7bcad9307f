"""Training epochs of any configuration against dense at its widths (``g2g bench --epoch-config``),
timed as ``g2g train`` trains, in one process, and written as an *epoch-speed* document::

    {"kind": "epoch-speed", "dataset": str, "baseline": "dense", "env": {...}, "epoch_steps": int | null,
     "rows": [{"label", "config", "seconds", "baseline_seconds", "ratio", "ratio_median", "ratio_min",
               "ratio_max"}]}

``seconds`` and ``baseline_seconds`` are per repeat (of the first ``epoch_steps`` steps of an
epoch when set, else of whole epochs), ``ratio`` is baseline / config per repeat, and its median,
min and max are the statistic of ``timing``.
"""

from __future__ import annotations

import dataclasses
import glob
import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .bench_config import BenchConfig
from .config import Config, DSTConfig, ModelConfig
from .data import Batches, Dataset
from .dst import DynamicSparsity
from .errors import G2GError
from .models import build_from_config
from .optim import adam
from .runs import environment, read_config
from .sweep import cell_parser, load_suite
from .timing import STATISTIC, format_ms, median_repeat, sync_for
from .train import check_config, run_data, train_step



@dataclass(frozen=True)
class EpochJob:
    """One configuration to time, and the dense model it is timed against."""

    label: str
    config: Config  # resolved
    baseline: Config


def read_configs(sources: Sequence[str]) -> list[Config]:
    """The configurations named by config.json files, run directories, globs of them and suite
    files (every cell of a ``suites/*.toml``), in order."""
    configs = []
    for source in sources:
        paths = sorted(glob.glob(source)) if any(c in source for c in "*?[") else [source]
        if not paths:
            raise G2GError(f"--epoch-config {source!r} matches no file")
        for path in map(Path, paths):
            if path.suffix == ".toml":
                configs += [cell.config for cell in load_suite(path, [], [], None, cell_parser()).cells]
            else:
                configs.append(read_config(path))
    return configs


def dense_baseline(cfg: Config) -> Config:
    """Dense at the configuration's widths, front end, data and training settings. Dense has no
    G, p', tiles or DST; its dropout is the default (0): the plain dense MLP of Table I."""
    return dataclasses.replace(cfg, model=ModelConfig(name="dense", hidden=cfg.model.hidden,
                                                      frontend=cfg.model.frontend), dst=DSTConfig())


def config_label(cfg: Config) -> str:
    """The model and what differs from the dataset's default configuration, e.g.
    ``g2g-index p_inter=0.01 inter_tile=8`` (dataset, seed, device and threads left out)."""
    default = check_config(Config().replace(data={"dataset": cfg.data.dataset})).identity()
    own = check_config(cfg).identity()
    parts = [f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in own.items()
             if k not in ("model", "dataset") and v != default.get(k)]
    return " ".join([own["model"], *parts])


def epoch_jobs(configs: Sequence[Config]) -> list[EpochJob]:
    """One job per configuration up to the seed (the first seed given is timed), all of one
    dataset; the plain dense configuration is the baseline itself and is left out."""
    unique: dict[str, Config] = {}
    for cfg in map(check_config, configs):  # as g2g train checks and resolves it
        unique.setdefault(json.dumps(cfg.identity(), sort_keys=True), cfg)
    datasets = sorted({c.data.dataset for c in unique.values()})
    if len(datasets) > 1:
        raise G2GError(f"the epoch configurations are of several datasets ({', '.join(datasets)}); "
                       "time one dataset per g2g bench")
    jobs = [EpochJob(config_label(c), c, dense_baseline(c)) for c in unique.values()]
    # Dense uses only its widths, front end and dropout of the model knobs: with dropout 0 and no
    # DST it is its own baseline (speed-up 1 by definition).
    return [j for j in jobs if not (j.config.model.name == "dense" and j.config.model.dropout == 0
                                    and not j.config.dst.enabled)]


def time_epoch(cfg: Config, ds: Dataset, bench: BenchConfig, repeat: int,
               clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds of one training epoch of a fresh model of ``cfg`` as ``g2g train`` runs it
    (``train_step``, the cosine schedule, DST), on the real batches; only its first
    ``bench.epoch_steps`` steps if set. Data order and augmentation are seeded by ``repeat``, so
    the two sides of a pair see the same batches. ``bench.warmup`` untimed steps come first: the
    epochs of a run after its first do not pay first-call costs. The loss and accuracy sums that
    ``g2g train`` logs are left out (a few small ops per step on either side)."""
    device = torch.device(bench.device)
    shape = tuple(ds.train_x.shape[1:])
    model = build_from_config(cfg, shape, ds.num_classes).to(device)
    model.train()
    opt = adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    batches = Batches(ds.train_x, ds.train_y, cfg.train.batch_size, ds.mean, ds.std, shuffle=True,
                      generator=torch.Generator().manual_seed(repeat), augment=bool(cfg.data.augment))
    total_steps = len(batches) * cfg.train.epochs
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    dst = (DynamicSparsity(model, opt, cfg.dst, total_steps=total_steps, seed=cfg.train.seed)
           if cfg.dst.enabled else None)

    def run(steps: int) -> None:
        for x, y in itertools.islice(batches, steps):
            train_step(model, opt, x, y)
            scheduler.step()
            if dst is not None:
                dst.step()

    sync = sync_for(device)
    try:
        run(bench.warmup)
        steps = len(batches) if bench.epoch_steps is None else min(bench.epoch_steps, len(batches))
        sync()
        start = clock()
        run(steps)
        sync()
        return clock() - start
    finally:
        if dst is not None:
            dst.close()


class _Datasets:
    """Each dataset (and validation split) loaded once, on the bench's device."""

    def __init__(self, data_dir: str | None, device: str) -> None:
        self.data_dir, self.device, self.loaded = data_dir, device, {}

    def __call__(self, cfg: Config) -> Dataset:
        d = cfg.data
        key = (d.dataset, d.labels, d.val, cfg.train.seed if d.val else None)
        if key not in self.loaded:
            self.loaded[key] = run_data(cfg, self.data_dir)[0].to(self.device)
        return self.loaded[key]


def bench_epochs(jobs: Sequence[EpochJob], cfg: BenchConfig, data_dir: str | None = None,
                 time_one: Callable[[Config, int], float] | None = None, log=None) -> dict:
    """Each job's epoch against its dense baseline, ``cfg.epoch_repeats`` times, in one process:
    repeat by repeat over all jobs (a slow phase hits one repeat of many jobs, not every repeat of
    one), each pair back to back in alternating order. ``time_one(config, repeat) -> seconds``
    defaults to ``time_epoch`` on the real data; the result is the epoch-speed document."""
    if time_one is None:
        datasets = _Datasets(data_dir, cfg.device)

        def time_one(c: Config, repeat: int) -> float:
            return time_epoch(c, datasets(c), cfg, repeat)

    seconds = [([], []) for _ in jobs]  # (baseline, config) per job
    for r in range(cfg.epoch_repeats):
        for i, job in enumerate(jobs):
            pair = [(0, job.baseline), (1, job.config)]
            for side, c in pair if (r + i) % 2 == 0 else pair[::-1]:
                seconds[i][side].append(time_one(c, r))
            if log is not None:
                log(f"repeat {r + 1}/{cfg.epoch_repeats} {job.label}: {seconds[i][1][-1]:.2f} s, "
                    f"dense {seconds[i][0][-1]:.2f} s")
    return {"kind": "epoch-speed", "dataset": jobs[0].config.data.dataset if jobs else cfg.dataset,
            "baseline": "dense", "env": environment(cfg.device), "epoch_steps": cfg.epoch_steps,
            "rows": [_epoch_row(job, base, own) for job, (base, own) in zip(jobs, seconds)]}


def _epoch_row(job: EpochJob, baseline: list[float], own: list[float]) -> dict:
    s = median_repeat(baseline, own)
    return {"label": job.label, "config": job.config.to_dict(), "seconds": own, "baseline_seconds": baseline,
            "ratio": [b / o for b, o in zip(baseline, own)], "ratio_median": s["ratio"],
            "ratio_min": s["ratio_min"], "ratio_max": s["ratio_max"]}


def epoch_table(doc: dict) -> str:
    """Markdown of an epoch-speed document, the same statistic as the other tables."""
    k = doc["epoch_steps"]
    steps = "whole epochs" if k is None else f"the first {k} step{'s' * (k > 1)} of each epoch"
    repeats = len(doc["rows"][0]["seconds"]) if doc["rows"] else 0
    lines = [f"{doc['dataset']} training, seconds of {steps}; {repeats} repeats; {STATISTIC}.", "",
             "| configuration | dense s | G2G s | speed-up | min-max |", "|---|---|---|---|---|"]
    for row in doc["rows"]:
        s = median_repeat(row["baseline_seconds"], row["seconds"])
        lines.append(f"| {row['label']} | {format_ms(s['dense'])} | {format_ms(s['g2g'])} | {s['ratio']:.2f}x | "
                     f"{s['ratio_min']:.2f}-{s['ratio_max']:.2f} |")
    return "\n".join(lines)
