"""``g2g bench``: a G2G SparseLinear against nn.Linear of the same shape, and whole training epochs.

Shared machines make single timings meaningless, so every repeat times the dense and the sparse
side back to back (alternating which goes first), and the result reports per-side medians and the
median of the per-repeat ratios (dense time / sparse time, > 1 = sparse faster), with the
conditions (device, threads, dtype, shapes, code version) stored next to them.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .config import _Section, knob
from .data import Batches, load_dataset
from .errors import G2GError, lookup
from .layers import SparseLinear
from .models import build_model
from .optim import adam
from .runs import environment
from .topology import group_ids, modular_mask
from .train import resolve_device, train_step

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
MODES = ("forward", "forward_backward", "step")
PATHS = {"auto": None, "fast": True, "reference": False}  # -> SparseLinear.fast


@dataclass(frozen=True)
class BenchConfig(_Section):
    widths: tuple[int, ...] = knob((1024, 2048, 4096), "layer widths (in = out)",
                                   check=lambda v: len(v) > 0 and min(v) >= 8, expect="widths >= 8")
    batch: int = knob(256, "batch size", check=lambda v: v >= 1, expect=">= 1")
    device: str = knob("cpu", "cpu | cuda | cuda:N")
    dtype: str = knob("float32", "float32 | bfloat16 | float16")
    threads: int | None = knob(None, "CPU threads", check=lambda v: v >= 1, expect=">= 1")
    repeats: int = knob(15, "timed repeats per side", check=lambda v: v >= 1, expect=">= 1")
    inter_tile: int = knob(1, "inter-group tile side", check=lambda v: v >= 1, expect=">= 1")
    path: str = knob("auto", "SparseLinear path: auto | fast | reference")
    epoch_models: tuple[str, ...] = ()
    dataset: str = knob("fashion-mnist", "dataset of the epoch timings")
    epoch_repeats: int = knob(3, "timed epochs per model", check=lambda v: v >= 1, expect=">= 1")

    def validate(self) -> None:
        lookup(DTYPES, self.dtype, "dtype")
        lookup(PATHS, self.path, "path")
        if self.dtype != "float32" and not self.device.startswith("cuda"):
            raise G2GError(f"{self.dtype} is benchmarked on CUDA only (the CPU kernels are float32)")
        # The widest layer's dense weight, gradient, Adam state and activations must fit: say so
        # before allocating, not in a traceback.
        need = 4 * max(self.widths) ** 2 * DTYPES[self.dtype].itemsize * 2
        if need > 64 * 2**30:
            raise G2GError(f"width {max(self.widths)} needs about {need / 2**30:.0f} GiB for the dense "
                           "side; use smaller --widths")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _runner(layer: nn.Module, x: torch.Tensor, gy: torch.Tensor, mode: str,
            opt: torch.optim.Optimizer) -> Callable[[], None]:
    def forward() -> None:
        with torch.no_grad():
            layer(x)

    def forward_backward() -> None:
        for p in layer.parameters():
            p.grad = None
        x.grad = None
        layer(x).backward(gy)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).backward(gy)
        opt.step()

    return {"forward": forward, "forward_backward": forward_backward, "step": step}[mode]


def bench_layer(
    width: int,
    batch: int = 256,
    *,
    groups: int = 8,
    p_intra: float = 1.0,
    p_inter: float = 0.15,
    scheme: str = "random",
    inter_tile: int = 1,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    repeats: int = 20,
    warmup: int = 3,
    seed: int = 0,
    modes: tuple[str, ...] = MODES,
    path: str = "auto",
) -> dict:
    """Time forward, forward+backward (input, weight and bias grads) and an Adam step of a
    ``width`` x ``width`` G2G layer against ``nn.Linear``; returns a JSON-able dict."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    out_g = group_ids(width, groups, scheme, gen)
    in_g = group_ids(width, groups, scheme, gen)
    mask = modular_mask(out_g, in_g, p_intra, p_inter, gen, inter_tile=inter_tile)
    sparse = SparseLinear(width, width, mask, in_groups=in_g, out_groups=out_g, generator=gen)
    sparse.fast = PATHS[path]
    dense = nn.Linear(width, width)
    sparse.to(device=device, dtype=dtype)
    dense.to(device=device, dtype=dtype)
    x = torch.randn(batch, width, generator=gen).to(device=device, dtype=dtype).requires_grad_(True)
    gy = torch.randn(batch, width, generator=gen).to(device=device, dtype=dtype)

    layers = {"dense": dense, "sparse": sparse}
    opts = {k: adam(m.parameters(), lr=1e-4) for k, m in layers.items()}
    times: dict[str, dict[str, list[float]]] = {m: {"dense": [], "sparse": []} for m in modes}
    for mode in modes:
        runs = {k: _runner(m, x, gy, mode, opts[k]) for k, m in layers.items()}
        for _ in range(warmup):
            for run in runs.values():
                run()
        for i in range(repeats):
            for k in ("dense", "sparse") if i % 2 == 0 else ("sparse", "dense"):
                _sync(device)
                t = time.perf_counter()
                runs[k]()
                _sync(device)
                times[mode][k].append((time.perf_counter() - t) * 1e3)
    result: dict = {
        "width": width, "batch": batch, "in_features": width, "out_features": width,
        "groups": groups, "p_intra": p_intra, "p_inter": p_inter, "scheme": scheme, "inter_tile": inter_tile,
        "density": float(mask.float().mean()), "dtype": str(dtype).replace("torch.", ""),
        "device": str(device), "threads": torch.get_num_threads(), "path": sparse.execution_path(x),
        "repeats": repeats, "modes": {},
    }
    for mode in modes:
        d, s = times[mode]["dense"], times[mode]["sparse"]
        dm, sm = statistics.median(d), statistics.median(s)
        result["modes"][mode] = {
            "dense_ms": round(dm, 3), "sparse_ms": round(sm, 3), "ratio": round(dm / sm, 3),
            "ratio_median_of_pairs": round(statistics.median(a / b for a, b in zip(d, s)), 3),
        }
    return result


def layer_table(rows: list[dict]) -> str:
    """Markdown: median ms of nn.Linear and SparseLinear and the median of per-pair ratios."""
    lines = ["| width | tile | dtype | path | mode | nn.Linear ms | SparseLinear ms | speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for mode, m in r["modes"].items():
            lines.append(f"| {r['width']} | {r['inter_tile']} | {r['dtype']} | {r['path']} | {mode} | "
                         f"{m['dense_ms']:.3f} | {m['sparse_ms']:.3f} | {m['ratio_median_of_pairs']:.2f}x |")
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
            _sync(torch.device(device))
            times[name].append(time.perf_counter() - t)
    med = {n: statistics.median(v) for n, v in times.items()}
    return {"dataset": dataset, "batch_size": batch_size, "repeats": repeats, "seconds": times,
            "median_seconds": med, "speedup_vs_first": {n: med[models[0]] / med[n] for n in models}}


def run(cfg: BenchConfig, json_path: Path | None = None, data_dir: str | None = None, verbose: bool = True) -> dict:
    """The whole ``g2g bench``: layer table, optional epoch timings, optional JSON file."""
    resolve_device(cfg.device)
    if json_path is not None and not json_path.parent.is_dir():  # fail before the long part
        raise G2GError(f"--json: directory {json_path.parent} does not exist")
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    rows = [bench_layer(w, cfg.batch, inter_tile=cfg.inter_tile, dtype=DTYPES[cfg.dtype], device=cfg.device,
                        repeats=cfg.repeats, path=cfg.path) for w in cfg.widths]
    result = {"machine": environment(cfg.device), "config": cfg.to_dict(), "layers": rows}
    if verbose:
        print(layer_table(rows))
    if cfg.epoch_models:
        ep = epoch_times(list(cfg.epoch_models), cfg.dataset, repeats=cfg.epoch_repeats, batch_size=cfg.batch,
                         device=cfg.device, data_dir=data_dir, inter_tile=cfg.inter_tile)
        result["epochs"] = ep
        if verbose:
            for m in cfg.epoch_models:
                print(f"{cfg.dataset} epoch, {m}: {ep['median_seconds'][m]:.2f} s "
                      f"(x{ep['speedup_vs_first'][m]:.2f} vs {cfg.epoch_models[0]})")
    if json_path is not None:
        try:
            json_path.write_text(json.dumps(result, indent=2) + "\n")
        except OSError as e:
            raise G2GError(f"cannot write {json_path}: {e.strerror or e}") from None
    return result
