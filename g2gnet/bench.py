"""``g2g bench``: G2G against dense in one process. Three tables: a layer (SparseLinear against
nn.Linear of the same shape), a whole model (e.g. the Fashion-MNIST g2g-mixer against the dense
MLP, random inputs) and training epochs of any configuration against dense at its widths.

One statistic everywhere (``STATISTIC``). Shared machines make single timings meaningless, so
every repeat times the dense and the G2G side back to back, alternating which goes first, and a
row shows the *median repeat*: the repeat whose ratio dense time / G2G time is the median over
the repeats, with that repeat's two times. The speed-up shown is therefore always the ratio of
the times shown (a table that printed per-side medians beside a median of ratios once read
``2.101 | 2.264 | 1.29x``); the spread is the ratio's min-max over the repeats. The raw times and
the conditions (device, threads, dtype, shapes, code version) are stored with the numbers.
"""

from __future__ import annotations

import dataclasses
import glob
import itertools
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import Config, DSTConfig, ModelConfig, _Section, knob
from .data import Batches, Dataset, load_dataset, split_validation
from .data.datasets import dataset_info
from .dst import DynamicSparsity
from .errors import G2GError, lookup
from .layers import SparseLinear, sparse_layers
from .models import MODELS, build_model
from .optim import adam
from .runs import environment, read_config
from .topology import group_ids, modular_mask
from .train import resolve_device, train_step

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PATHS = {"auto": None, "fast": True, "reference": False}  # -> SparseLinear.fast
TRAIN_MODES = ("forward", "forward_backward", "step")
MODES = (*TRAIN_MODES, "inference")
TABLES = ("layer", "model")
# An inference call at batch 1 lasts microseconds, where timer and scheduler noise dominate: each
# repeat times as many calls as make up this many rows (256 calls at batch 1, 1 at batch 256).
ROWS_PER_REPEAT = 256
STATISTIC = ("each repeat times the dense and the G2G side back to back, alternating which goes first; "
             "a row is the median repeat (its ratio dense time / G2G time is the median over the repeats, "
             "the lower median for an even count) with that repeat's two times, so speed-up = dense / G2G "
             "on every row; min-max: the ratio's range over the repeats")


def _subset_of(choices: tuple[str, ...], empty_ok: bool) -> dict:
    return {"check": lambda v: set(v) <= set(choices) and (empty_ok or len(v) > 0),
            "expect": f"a list of {', '.join(choices)}" + ("" if empty_ok else " (at least one)")}


@dataclass(frozen=True)
class BenchConfig(_Section):
    """What ``g2g bench`` times and how: every option of ``g2g bench`` is one of these knobs."""

    widths: tuple[int, ...] = knob((1024, 2048, 4096), "layer table: widths of the layers (in = out)",
                                   check=lambda v: len(v) > 0 and min(v) >= 8, expect="widths >= 8")
    batch: int = knob(256, "batch size of the training rows (forward, forward_backward, step)",
                      check=lambda v: v >= 1, expect=">= 1")
    infer_batches: tuple[int, ...] = knob((1, 8, 64, 256), "batch sizes of the inference rows",
                                          check=lambda v: len(v) > 0 and min(v) >= 1, expect="batch sizes >= 1")
    modes: tuple[str, ...] = knob(MODES, "rows of the layer and model tables: forward (no grad), forward_backward "
                                  "(input, weight and bias gradients), step (forward, backward, Adam), inference "
                                  "(eval() forward under torch.inference_mode())", **_subset_of(MODES, False))
    tables: tuple[str, ...] = knob(TABLES, "tables to time besides the epochs: layer (SparseLinear vs nn.Linear), "
                                   "model (a whole model vs the dense MLP); none: epochs only",
                                   **_subset_of(TABLES, True))
    model: str = knob("g2g-mixer", "model table: this model against dense, at --dataset's input size and "
                      "classes with the default hidden widths, on random inputs")
    device: str = knob("cpu", "cpu | cuda | cuda:N")
    dtype: str = knob("float32", "float32 | bfloat16 | float16 (layer table)")
    threads: int | None = knob(None, "CPU threads (default: torch's)", check=lambda v: v >= 1, expect=">= 1")
    repeats: int = knob(15, "timed repeats of each layer and model row (each times both sides)",
                        check=lambda v: v >= 1, expect=">= 1")
    warmup: int = knob(3, "untimed calls of each side before a row is timed (epochs: untimed training steps)",
                       check=lambda v: v >= 0, expect=">= 0")
    inter_tile: int = knob(1, "inter-group tile side of the G2G layers and models (1 = element-wise)",
                           check=lambda v: v >= 1, expect=">= 1")
    path: str = knob("auto", "SparseLinear execution path: auto (the dispatcher's choice) | fast | reference")
    dataset: str = knob("fashion-mnist", "dataset of the model table's input size and of --epoch")
    epoch_models: tuple[str, ...] = knob((), "time training epochs of these models (their default configuration on "
                                         "--dataset, with --inter-tile) against dense, e.g. g2g-mixer,er",
                                         flag="--epoch", metavar="MODELS")
    epoch_configs: tuple[str, ...] = knob((), "time training epochs of these configurations against dense at their "
                                          "widths: config.json files, run directories, globs of them, suite files "
                                          "(suites/*.toml: their cells); configurations that differ only in the "
                                          "seed are timed once", flag="--epoch-config", metavar="CONFIG")
    epoch_repeats: int = knob(3, "timed epochs of each configuration and of its dense baseline",
                              check=lambda v: v >= 1, expect=">= 1")
    epoch_steps: int | None = knob(None, "time only the first N training steps of each epoch (a partial epoch, for a "
                                   "quicker ratio; default: whole epochs)", check=lambda v: v >= 1,
                                   expect=">= 1", metavar="N")

    def validate(self) -> None:
        lookup(DTYPES, self.dtype, "dtype")
        lookup(PATHS, self.path, "path")
        lookup(MODELS, self.model, "model")
        dataset_info(self.dataset)
        for name in self.epoch_models:
            lookup(MODELS, name, "model")
        if self.dtype != "float32" and not self.device.startswith("cuda"):
            raise G2GError(f"{self.dtype} is benchmarked on CUDA only (the CPU kernels are float32)")
        # The widest layer's dense weight, gradient, Adam state and activations must fit: say so
        # before allocating, not in a traceback.
        need = 4 * max(self.widths) ** 2 * DTYPES[self.dtype].itemsize * 2
        if "layer" in self.tables and need > 64 * 2**30:
            raise G2GError(f"width {max(self.widths)} needs about {need / 2**30:.0f} GiB for the dense "
                           "side; use smaller --widths")


# -- the timing and its one statistic -------------------------------------------------------------
def time_pairs(calls: dict[str, Callable[[], None]], repeats: int, warmup: int = 0, *, per_repeat: int = 1,
               clock: Callable[[], float] = time.perf_counter,
               sync: Callable[[], None] = lambda: None) -> dict[str, list[float]]:
    """Milliseconds per call of each of the two ``calls`` in each repeat (``per_repeat`` calls
    timed together). The first goes first in even repeats, the second in odd ones, so a drift of
    a shared machine hits both alike; ``warmup`` untimed calls of each come before."""
    if len(calls) != 2:
        raise ValueError(f"time_pairs compares two sides, got {list(calls)}")
    for _ in range(warmup):
        for call in calls.values():
            call()
    names = list(calls)
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(repeats):
        for name in names if i % 2 == 0 else names[::-1]:
            sync()
            start = clock()
            for _ in range(per_repeat):
                calls[name]()
            sync()
            times[name].append((clock() - start) * 1e3 / per_repeat)
    return times


def median_repeat(dense: Sequence[float], g2g: Sequence[float]) -> dict[str, float]:
    """The statistic of every row (``STATISTIC``): the repeat whose ratio dense / g2g is the median
    (the lower median for an even count), its two times, and the ratio's min and max."""
    if not dense or len(dense) != len(g2g):
        raise ValueError(f"need the same number (>= 1) of times per side, got {len(dense)} and {len(g2g)}")
    if min(*dense, *g2g) <= 0:
        raise ValueError("times must be positive")
    ratios = [d / g for d, g in zip(dense, g2g)]
    k = sorted(range(len(ratios)), key=ratios.__getitem__)[(len(ratios) - 1) // 2]
    return {"dense": dense[k], "g2g": g2g[k], "ratio": dense[k] / g2g[k], "ratio_min": min(ratios),
            "ratio_max": max(ratios)}


def _sync(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


# -- layer and model tables ---------------------------------------------------------------------------
def _train_call(module: nn.Module, x: torch.Tensor, backward: Callable[[torch.Tensor], None], mode: str,
                opt: torch.optim.Optimizer) -> Callable[[], None]:
    def forward() -> None:
        with torch.no_grad():
            module(x)

    def forward_backward() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        backward(module(x))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        x.grad = None
        backward(module(x))
        opt.step()

    return {"forward": forward, "forward_backward": forward_backward, "step": step}[mode]


def _infer_call(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def infer() -> None:
        with torch.inference_mode():
            module(x)

    return infer


def _paths(module: nn.Module, x: torch.Tensor, inference: bool) -> str:
    """The execution path(s) the dispatcher picks for the module's sparse layers at this input."""
    seen: list[str] = []
    hooks = [layer.register_forward_pre_hook(lambda m, args: seen.append(m.execution_path(args[0])))
             for _, layer in sparse_layers(module)]
    try:
        with torch.inference_mode() if inference else torch.no_grad():
            module(x)
    finally:
        for h in hooks:
            h.remove()
    return "+".join(sorted(set(seen))) or "dense"


def _entry(times: dict[str, list[float]], batch: int, path: str, per_repeat: int) -> dict:
    s = median_repeat(times["dense"], times["sparse"])
    return {"batch": batch, "path": path, "dense_ms": s["dense"], "sparse_ms": s["g2g"], "ratio": s["ratio"],
            "ratio_min": s["ratio_min"], "ratio_max": s["ratio_max"],
            "ratio_median_of_pairs": s["ratio"],  # the name of this statistic in older bench files
            "calls_per_repeat": per_repeat, "dense_times_ms": times["dense"], "sparse_times_ms": times["sparse"]}


@dataclass
class Contest:
    """A G2G module against its dense counterpart: the row's description, the two modules, how to
    make inputs of a batch size, and how to backpropagate an output of batch ``cfg.batch``."""

    row: dict
    dense: nn.Module
    sparse: nn.Module
    inputs: Callable[[int], torch.Tensor]
    backward: Callable[[torch.Tensor], None]
    input_grad: bool  # a layer's input gradient is part of its backward; a model's is not


def training_rows(c: Contest, cfg: BenchConfig) -> dict[str, dict]:
    """The training modes of ``cfg.modes`` at batch ``cfg.batch``, by mode."""
    sync = _sync(torch.device(cfg.device))
    sides = {"dense": c.dense, "sparse": c.sparse}
    modes = [m for m in cfg.modes if m in TRAIN_MODES]
    if not modes:
        return {}
    x = c.inputs(cfg.batch).requires_grad_(c.input_grad)
    opts = {k: adam(m.parameters(), lr=1e-4) for k, m in sides.items()}
    path = _paths(c.sparse, x, inference=False)
    rows = {}
    for mode in modes:
        calls = {k: _train_call(m, x, c.backward, mode, opts[k]) for k, m in sides.items()}
        rows[mode] = _entry(time_pairs(calls, cfg.repeats, cfg.warmup, sync=sync), cfg.batch, path, 1)
    return rows


def inference_rows(c: Contest, cfg: BenchConfig) -> list[dict]:
    """eval() forwards under ``torch.inference_mode()`` at every ``cfg.infer_batches``. The modules
    stay in eval mode: time inference after training, as a trained model is served."""
    if "inference" not in cfg.modes:
        return []
    sync = _sync(torch.device(cfg.device))
    sides = {"dense": c.dense.eval(), "sparse": c.sparse.eval()}
    rows = []
    for b in cfg.infer_batches:
        x = c.inputs(b)
        per = max(1, ROWS_PER_REPEAT // b)
        calls = {k: _infer_call(m, x) for k, m in sides.items()}
        times = time_pairs(calls, cfg.repeats, cfg.warmup, per_repeat=per, sync=sync)
        rows.append(_entry(times, b, _paths(c.sparse, x, inference=True), per))
    return rows


def _set_path(module: nn.Module, path: str) -> None:
    for _, layer in sparse_layers(module):
        layer.fast = PATHS[path]


def layer_contest(width: int, cfg: BenchConfig, seed: int = 0) -> Contest:
    """A ``width`` x ``width`` G2G layer against ``nn.Linear``. Its topology is the model's defaults
    (``ModelConfig``: G, p_intra, p') with ``cfg.inter_tile`` and random groups on both sides: a
    G2G layer of no particular place in a network."""
    device, dtype = torch.device(cfg.device), DTYPES[cfg.dtype]
    m = ModelConfig()
    gen = torch.Generator().manual_seed(seed)
    out_g, in_g = group_ids(width, m.groups, "random", gen), group_ids(width, m.groups, "random", gen)
    mask = modular_mask(out_g, in_g, m.p_intra, m.p_inter, gen, inter_tile=cfg.inter_tile)
    sparse = SparseLinear(width, width, mask, in_groups=in_g, out_groups=out_g, generator=gen)
    _set_path(sparse, cfg.path)
    dense = nn.Linear(width, width)
    sparse.to(device=device, dtype=dtype)
    dense.to(device=device, dtype=dtype)

    def inputs(batch: int) -> torch.Tensor:
        return torch.randn(batch, width, generator=gen).to(device=device, dtype=dtype)

    gy = inputs(cfg.batch)
    row = {"width": width, "batch": cfg.batch, "in_features": width, "out_features": width, "groups": m.groups,
           "p_intra": m.p_intra, "p_inter": m.p_inter, "scheme": "random", "inter_tile": cfg.inter_tile,
           "density": float(mask.float().mean()), "dtype": cfg.dtype, "device": str(device),
           "threads": torch.get_num_threads(), "repeats": cfg.repeats}
    return Contest(row, dense, sparse, inputs, lambda out: out.backward(gy), input_grad=True)


def model_contest(cfg: BenchConfig, seed: int = 0) -> Contest:
    """``cfg.model`` against the dense MLP at ``cfg.dataset``'s input size and classes (default
    hidden widths, ``cfg.inter_tile``), on random inputs and labels."""
    device = torch.device(cfg.device)
    info = dataset_info(cfg.dataset)
    n_in = math.prod(info.shape)
    sparse = build_model(cfg.model, n_in, info.num_classes, input_shape=info.shape, seed=seed,
                         inter_tile=cfg.inter_tile).to(device)
    dense = build_model("dense", n_in, info.num_classes, input_shape=info.shape, seed=seed).to(device)
    _set_path(sparse, cfg.path)
    gen = torch.Generator().manual_seed(seed)

    def inputs(batch: int) -> torch.Tensor:
        return torch.randn(batch, *info.shape, generator=gen).to(device)

    y = torch.randint(0, info.num_classes, (cfg.batch,), generator=gen).to(device)
    shape = "-".join(map(str, (n_in, *ModelConfig().hidden, info.num_classes)))
    row = {"model": cfg.model, "baseline": "dense", "dataset": cfg.dataset, "shape": shape,
           "inter_tile": cfg.inter_tile, "density": _density(sparse), "batch": cfg.batch, "device": str(device),
           "threads": torch.get_num_threads(), "repeats": cfg.repeats}
    return Contest(row, dense, sparse, inputs, lambda out: F.cross_entropy(out, y).backward(), input_grad=False)


def finish(c: Contest, modes: dict[str, dict], inference: list[dict]) -> dict:
    """The JSON row of a contest: its description, the training path, its rows."""
    return {**c.row, "path": next(iter(modes.values()), {}).get("path"), "modes": modes, "inference": inference}


def bench_layer(width: int, cfg: BenchConfig, seed: int = 0) -> dict:
    """The training and inference rows of one layer (``layer_contest``)."""
    c = layer_contest(width, cfg, seed)
    return finish(c, training_rows(c, cfg), inference_rows(c, cfg))


def bench_model(cfg: BenchConfig, seed: int = 0) -> dict:
    """The training and inference rows of the whole model (``model_contest``)."""
    c = model_contest(cfg, seed)
    return finish(c, training_rows(c, cfg), inference_rows(c, cfg))


def _density(model: nn.Module) -> float | None:
    layers = [layer for _, layer in sparse_layers(model)]
    total = sum(layer.in_features * layer.out_features for layer in layers)
    return sum(layer.nnz for layer in layers) / total if total else None


def _ms(v: float) -> str:
    """Four significant digits, never in exponent form (0.01234, 1.234, 1234)."""
    return f"{v:.{max(0, 3 - math.floor(math.log10(v)))}f}"


_MODE_NAMES = {"forward": "forward", "forward_backward": "forward + backward", "step": "Adam step",
               "inference": "inference"}


def _lines(what: str, row: dict) -> Iterator[str]:
    entries = [(_MODE_NAMES[mode], e) for mode, e in row["modes"].items()]
    entries += [(_MODE_NAMES["inference"], e) for e in row["inference"]]
    for mode, e in entries:
        yield (f"| {what} | {mode} | {e['batch']} | {e['path']} | {_ms(e['dense_ms'])} | {_ms(e['sparse_ms'])} | "
               f"{e['ratio']:.2f}x | {e['ratio_min']:.2f}-{e['ratio_max']:.2f} |")


def bench_table(layers: list[dict], models: list[dict], repeats: int) -> str:
    """Markdown: one row per (table row, mode, batch), the statistic stated above it."""
    head = [f"Milliseconds per call; {repeats} repeats; {STATISTIC}. Inference: eval() under "
            f"torch.inference_mode(), {ROWS_PER_REPEAT}/batch calls per repeat.", "",
            "| layer or model | mode | batch | path | dense ms | G2G ms | speed-up | min-max |",
            "|---|---|---|---|---|---|---|---|"]
    lines = [line for r in layers for line in _lines(f"{r['width']}x{r['width']} tile {r['inter_tile']} "
                                                      f"{r['dtype']}", r)]
    lines += [line for r in models for line in _lines(f"{r['model']} {r['shape']}", r)]
    return "\n".join(head + lines)


# -- epochs of any configuration ----------------------------------------------------------------
@dataclass(frozen=True)
class EpochJob:
    """One configuration to time, and the dense model it is timed against."""

    label: str
    config: Config  # resolved
    baseline: Config


def read_configs(sources: Sequence[str]) -> list[Config]:
    """The configurations named by config.json files, run directories, globs of them and suite
    files (every cell of a ``suites/*.toml``), in order."""
    from .sweep import cell_parser, load_suite  # sweep imports the CLI options; only needed here

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


def _resolved(cfg: Config) -> Config:
    info = dataset_info(cfg.data.dataset)
    return cfg.resolve(info.epochs, info.augment)


def config_label(cfg: Config) -> str:
    """The model and what differs from the dataset's default configuration, e.g.
    ``g2g-index p_inter=0.01 inter_tile=8`` (dataset, seed, device and threads left out)."""
    default = _resolved(Config().replace(data={"dataset": cfg.data.dataset})).identity()
    own = _resolved(cfg).identity()
    parts = [f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in own.items()
             if k not in ("model", "dataset") and v != default.get(k)]
    return " ".join([own["model"], *parts])


def epoch_jobs(configs: Sequence[Config]) -> list[EpochJob]:
    """One job per configuration up to the seed (the first seed given is timed), all of one
    dataset; the plain dense configuration is the baseline itself and is left out."""
    unique: dict[str, Config] = {}
    for cfg in map(_resolved, configs):
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
    model = build_model(cfg.model.name, math.prod(shape), ds.num_classes, input_shape=shape,
                        seed=cfg.train.seed, **cfg.model.options()).to(device)
    model.train()
    opt = adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    batches = Batches(ds.train_x, ds.train_y, cfg.train.batch_size, ds.mean, ds.std, shuffle=True,
                      generator=torch.Generator().manual_seed(repeat), augment=bool(cfg.data.augment))
    total_steps = len(batches) * cfg.train.epochs
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    dst = (DynamicSparsity.from_config(model, opt, cfg.dst, total_steps=total_steps, seed=cfg.train.seed)
           if cfg.dst.enabled else None)

    def run(steps: int) -> None:
        for x, y in itertools.islice(batches, steps):
            train_step(model, opt, x, y)
            scheduler.step()
            if dst is not None:
                dst.step()

    sync = _sync(device)
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
            ds = load_dataset(d.dataset, self.data_dir, labels=d.labels)
            if d.val:  # g2g train carves the validation images out of the training set
                ds, _ = split_validation(ds, d.val, cfg.train.seed)
            self.loaded[key] = ds.to(self.device)
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
                log(f"repeat {r + 1}/{cfg.epoch_repeats} {job.label}: dense {seconds[i][0][-1]:.2f} s, "
                    f"{seconds[i][1][-1]:.2f} s")
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
    steps = "whole epochs" if doc["epoch_steps"] is None else f"the first {doc['epoch_steps']} steps of each epoch"
    n = len(doc["rows"][0]["seconds"]) if doc["rows"] else 0
    lines = [f"{doc['dataset']} training, seconds of {steps}; {n} repeats; {STATISTIC}.", "",
             "| configuration | dense s | G2G s | speed-up | min-max |", "|---|---|---|---|---|"]
    for row in doc["rows"]:
        s = median_repeat(row["baseline_seconds"], row["seconds"])
        lines.append(f"| {row['label']} | {_ms(s['dense'])} | {_ms(s['g2g'])} | {s['ratio']:.2f}x | "
                     f"{s['ratio_min']:.2f}-{s['ratio_max']:.2f} |")
    return "\n".join(lines)


def _model_configs(cfg: BenchConfig) -> list[Config]:
    return [Config().replace(data={"dataset": cfg.dataset}, model={"name": m, "inter_tile": cfg.inter_tile})
            for m in cfg.epoch_models]


# -- the whole command --------------------------------------------------------------------------
def _write(path: Path | None, doc: dict) -> None:
    if path is None:
        return
    try:
        path.write_text(json.dumps(doc, indent=2) + "\n")
    except OSError as e:
        raise G2GError(f"cannot write {path}: {e.strerror or e}") from None


def run(cfg: BenchConfig, json_path: Path | None = None, data_dir: str | None = None, verbose: bool = True,
        epoch_json: Path | None = None) -> dict:
    """The whole ``g2g bench``: the layer and model tables, the epochs of ``cfg.epoch_models`` and
    ``cfg.epoch_configs``; everything in ``json_path``, the epoch-speed document in ``epoch_json``."""
    resolve_device(cfg.device)
    for path in (json_path, epoch_json):  # fail before the long part
        if path is not None and not path.parent.is_dir():
            raise G2GError(f"directory {path.parent} of {path} does not exist")
    jobs = epoch_jobs(_model_configs(cfg) + read_configs(cfg.epoch_configs))
    if epoch_json is not None and not jobs:
        raise G2GError("--epoch-json needs configurations to time (--epoch or --epoch-config), other than dense")
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    contests = [layer_contest(w, cfg) for w in cfg.widths] if "layer" in cfg.tables else []
    n_layers = len(contests)
    contests += [model_contest(cfg)] if "model" in cfg.tables else []
    # Every training row and epoch first, then every inference row: a trained model is served,
    # and training in a process that ran inference_mode once failed (issue 16 item 3).
    training = [training_rows(c, cfg) for c in contests]
    result: dict = {"kind": "bench", "machine": environment(cfg.device), "config": cfg.to_dict(),
                    "statistic": STATISTIC}
    if jobs:
        log = (lambda line: print(line, file=sys.stderr)) if verbose else None
        result["epochs"] = bench_epochs(jobs, cfg, data_dir, log=log)
        _write(epoch_json, result["epochs"])
    rows = [finish(c, t, inference_rows(c, cfg)) for c, t in zip(contests, training)]
    result["layers"], result["models"] = rows[:n_layers], rows[n_layers:]
    if verbose and rows:
        print(bench_table(result["layers"], result["models"], cfg.repeats))
    if verbose and jobs:
        print(epoch_table(result["epochs"]))
    _write(json_path, result)
    return result
