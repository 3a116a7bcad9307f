"""``g2g bench``: SparseLinear against nn.Linear per layer, and whole training epochs end to end.

Every figure is a median over interleaved repeats in one process, with the conditions (device,
threads, dtype, shapes) stored next to it: timings on shared machines are only comparable as
ratios measured side by side.
"""

from __future__ import annotations

import math
import statistics
import time

import torch

from .data import Batches, load_dataset
from .errors import G2GError
from .kernels.bench import bench_layer
from .models import build_model
from .optim import adam
from .runs import environment
from .train import resolve_device, train_step

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def run_bench(
    widths: list[int],
    batch: int = 256,
    device: str = "cpu",
    dtype: str = "float32",
    threads: int | None = None,
    repeats: int = 15,
    inter_tile: int = 1,
    verbose: bool = True,
) -> dict:
    """Layer timings for each width at the default G2G density; returns a JSON-able dict."""
    if dtype not in DTYPES:
        raise G2GError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    resolve_device(device)
    if dtype == "bfloat16" and not device.startswith("cuda"):
        raise G2GError("bfloat16 is benchmarked on CUDA only")
    if threads is not None:
        torch.set_num_threads(threads)
    rows = []
    for w in widths:
        rows.append(bench_layer(w, batch, inter_tile=inter_tile, dtype=DTYPES[dtype], device=device,
                                repeats=repeats, threads=threads))
    result = {"machine": environment(device), "layers": rows}
    if verbose:
        print(layer_table(rows))
    return result


def layer_table(rows: list[dict]) -> str:
    """Markdown: median ms of nn.Linear and SparseLinear and their ratio (dense/sparse)."""
    lines = ["| width | tile | path | mode | nn.Linear ms | SparseLinear ms | speed-up |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        for mode, m in r["modes"].items():
            lines.append(f"| {r['width']} | {r['inter_tile']} | {r['path']} | {mode} | {m['dense_ms']:.2f} | "
                         f"{m['sparse_ms']:.2f} | {m['ratio']:.2f}x |")
    return "\n".join(lines)


def epoch_times(
    models: list[str],
    dataset: str = "fashion-mnist",
    repeats: int = 3,
    batch_size: int = 256,
    device: str = "cpu",
    data_dir: str | None = None,
    seed: int = 0,
    **model_options,
) -> dict:
    """Seconds per training epoch (forward, backward, Adam step) of each model, interleaved.

    The models train for ``repeats`` epochs each, taking turns, so slow phases of a shared machine
    hit all of them; reported is the median epoch per model and each model's ratio to the first.
    """
    resolve_device(device)
    ds = load_dataset(dataset, data_dir).to(device)
    shape = tuple(ds.train_x.shape[1:])
    nets = {}
    for name in models:
        model = build_model(name, math.prod(shape), ds.num_classes, input_shape=shape, seed=seed,
                            **model_options).to(device)
        nets[name] = (model, adam(model.parameters(), lr=1e-3, weight_decay=1e-4))
    times: dict[str, list[float]] = {n: [] for n in models}
    for r in range(repeats):
        for name in models if r % 2 == 0 else reversed(models):
            model, opt = nets[name]
            gen = torch.Generator().manual_seed(seed + r)
            t = time.perf_counter()
            for x, y in Batches(ds.train_x, ds.train_y, batch_size, ds.mean, ds.std, shuffle=True, generator=gen):
                train_step(model, opt, x, y)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t)
    med = {n: statistics.median(v) for n, v in times.items()}
    return {"machine": environment(device), "dataset": dataset, "batch_size": batch_size, "repeats": repeats,
            "seconds": times, "median_seconds": med,
            "speedup_vs_first": {n: med[models[0]] / med[n] for n in models}}
