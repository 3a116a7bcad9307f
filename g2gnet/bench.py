"""``g2g bench``: G2G against dense in one process. Three tables: a layer (SparseLinear against
nn.Linear of the same shape), a whole model (e.g. the Fashion-MNIST g2g-mixer against the dense
MLP, random inputs), both with training rows and inference rows at several batch sizes, and
training epochs of any configuration against dense at its widths (``epoch_speed``).

Every row reports one statistic, the median repeat of interleaved pairs (``timing.STATISTIC``):
the speed-up shown is always dense time / G2G time of the two times shown. The raw times and the
conditions (device, threads, dtype, shapes, code version, allocator) are stored with the numbers.
Dense runs as in plain PyTorch: the bench keeps g2gnet from changing glibc's allocator in its process
(``malloc.keep_defaults``), which would slow dense training. G2G runs under the same defaults: as fast
as under g2gnet's setting up to 2048 wide, faster at 4096 (where the setting maps its step buffers
afresh; README, Performance).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import malloc
from .bench_config import DTYPES, PATHS, TRAIN_MODES, BenchConfig
from .config import Config, ModelConfig, TrainConfig
from .data.datasets import dataset_info
from .epoch_speed import bench_epochs, epoch_jobs, epoch_table, read_configs
from .errors import G2GError
from .layers import SparseLinear, sparse_layers
from .models import MLP, build_model
from .optim import adam
from .runs import environment
from .timing import STATISTIC, format_ms, median_repeat, sync_for, time_pairs
from .topology import group_ids, modular_mask
from .train import resolve_device

# An inference call at batch 1 lasts well under a millisecond, where timer and scheduler noise weigh: each
# repeat times as many calls as make up this many rows (256 calls at batch 1, 1 at batch 256).
ROWS_PER_REPEAT = 256


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
    """The execution path(s) the dispatcher picks for the module's sparse layers at this input, in
    the mode of the rows (a training forward, or an inference one)."""
    seen: list[str] = []
    hooks = [layer.register_forward_pre_hook(lambda m, args: seen.append(m.execution_path(args[0])))
             for _, layer in sparse_layers(module)]
    try:
        with torch.inference_mode() if inference else contextlib.nullcontext():
            module(x)
    finally:
        for h in hooks:
            h.remove()
    with torch.inference_mode() if inference else contextlib.nullcontext():
        stacked = isinstance(module, MLP) and module.stacked(x)  # (asked without the hooks, which stop it)
    return "+".join(sorted(set(seen))) + (" stacked" if stacked else "") or "dense"


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
    sync = sync_for(torch.device(cfg.device))
    sides = {"dense": c.dense, "sparse": c.sparse}
    modes = [m for m in cfg.modes if m in TRAIN_MODES]
    if not modes:
        return {}
    x = c.inputs(cfg.batch).requires_grad_(c.input_grad)
    train = TrainConfig()  # the Adam of g2g train (its weight decay costs a little per step)
    opts = {k: adam(m.parameters(), lr=train.lr, weight_decay=train.weight_decay) for k, m in sides.items()}
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
    sync = sync_for(torch.device(cfg.device))
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


def sparse_layer(width: int, inter_tile: int = 1, seed: int = 0,
                 generator: torch.Generator | None = None) -> SparseLinear:
    """The benchmarks' G2G layer, ``width`` x ``width``: the model's default topology (``ModelConfig``:
    G, p_intra, p') with ``inter_tile`` and random groups on both sides, a layer of no particular
    place in a network, drawn from ``generator`` (default: a new one seeded with ``seed``)."""
    m = ModelConfig()
    gen = generator if generator is not None else torch.Generator().manual_seed(seed)
    out_g, in_g = group_ids(width, m.groups, "random", gen), group_ids(width, m.groups, "random", gen)
    mask = modular_mask(out_g, in_g, m.p_intra, m.p_inter, gen, inter_tile=inter_tile)
    return SparseLinear(width, width, mask, in_groups=in_g, out_groups=out_g, generator=gen)


def layer_contest(width: int, cfg: BenchConfig, seed: int = 0) -> Contest:
    """``sparse_layer`` against ``nn.Linear``."""
    device, dtype = torch.device(cfg.device), DTYPES[cfg.dtype]
    m = ModelConfig()
    gen = torch.Generator().manual_seed(seed)
    sparse = sparse_layer(width, cfg.inter_tile, generator=gen)
    mask = sparse.mask
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


_MODE_NAMES = {"forward": "forward", "forward_backward": "forward + backward", "step": "Adam step",
               "inference": "inference"}


def _lines(what: str, row: dict) -> Iterator[str]:
    entries = [(_MODE_NAMES[mode], e) for mode, e in row["modes"].items()]
    entries += [(_MODE_NAMES["inference"], e) for e in row["inference"]]
    for mode, e in entries:
        yield (f"| {what} | {mode} | {e['batch']} | {e['path']} | {format_ms(e['dense_ms'])} | "
               f"{format_ms(e['sparse_ms'])} | {e['ratio']:.2f}x | {e['ratio_min']:.2f}-{e['ratio_max']:.2f} |")


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


def _model_configs(cfg: BenchConfig) -> list[Config]:
    return [Config().replace(data={"dataset": cfg.dataset}, model={"name": m, "inter_tile": cfg.inter_tile})
            for m in cfg.epoch_models]


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
    ``cfg.epoch_configs``; everything in ``json_path``, the epoch-speed document in ``epoch_json``.
    Leaves glibc's allocator at its defaults for the rest of the process (``malloc.keep_defaults``)."""
    resolve_device(cfg.device)
    # Dense as plain PyTorch runs it: g2gnet's process-wide allocator setting (g2gnet.malloc) maps a
    # dense layer's large gradients afresh at every step, ~10% of its training time at 2048 wide.
    plain = malloc.keep_defaults()
    for path in (json_path, epoch_json):  # fail before the long part
        if path is not None and not path.parent.is_dir():
            raise G2GError(f"directory {path.parent} of {path} does not exist")
    jobs = epoch_jobs(_model_configs(cfg) + read_configs(cfg.epoch_configs))
    if not jobs and (epoch_json is not None or cfg.epoch_models or cfg.epoch_configs):
        raise G2GError("no epochs to time: give --epoch or --epoch-config configurations other than dense "
                       "(dense is the baseline of every epoch row)")
    if not plain and verbose:
        print("g2g bench: g2gnet changed glibc's allocator in this process before the bench (a sparse layer "
              "was built): dense training is slower here than in plain PyTorch (g2gnet.malloc)", file=sys.stderr)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    contests = [layer_contest(w, cfg) for w in cfg.widths] if "layer" in cfg.tables else []
    n_layers = len(contests)
    contests += [model_contest(cfg)] if "model" in cfg.tables else []
    # Every training row and epoch first, then every inference row: a trained model is served,
    # and training in a process that ran inference_mode once failed (issue 16 item 3).
    training = [training_rows(c, cfg) for c in contests]
    result: dict = {"kind": "bench", "machine": environment(cfg.device), "config": cfg.to_dict(),
                    "statistic": STATISTIC, "allocator": malloc.describe()}
    if jobs:
        log = (lambda line: print(line, file=sys.stderr)) if verbose else None
        result["epochs"] = bench_epochs(jobs, cfg, data_dir, log=log)
        _write(epoch_json, result["epochs"])
    rows = [finish(c, t, inference_rows(c, cfg)) for c, t in zip(contests, training)]
    result["layers"], result["models"] = rows[:n_layers], rows[n_layers:]
    if verbose:
        tables = [bench_table(result["layers"], result["models"], cfg.repeats)] if rows else []
        print("\n\n".join(tables + ([epoch_table(result["epochs"])] if jobs else [])))
    _write(json_path, result)
    return result
