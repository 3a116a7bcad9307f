"""Layer benchmark: a G2G SparseLinear against nn.Linear of the same shape, in one process.

Machines running other work make single timings meaningless, so every repeat times the dense and
the sparse layer back to back (alternating which goes first), and the result reports per-mode
medians and the median of the per-repeat ratios (dense time / sparse time, >1 = sparse faster).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn as nn

from ..layers import SparseLinear
from ..optim import adam
from ..topology import group_ids, modular_mask
from . import native
from .dispatch import cached_plan, choose

MODES = ("forward", "forward_backward", "step")


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


def _path(layer: SparseLinear, x: torch.Tensor) -> str:
    if choose(layer, x) is None:
        return "reference"
    native_ok = x.device.type == "cpu" and x.dtype == torch.float32 and native.get() is not None
    return "native" if native_ok else "torch"


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
    threads: int | None = None,
    seed: int = 0,
    modes: tuple[str, ...] = MODES,
) -> dict:
    """Time forward, forward+backward (input, weight and bias grads) and an Adam step.

    Returns shapes, dtype, device, threads, density, the execution path taken by the sparse
    layer, the plan build time, and for each mode the median ms of both layers, the ratio of
    the medians and the median of per-repeat ratios (dense / sparse).
    """
    device = torch.device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(seed)
    out_g = group_ids(width, groups, scheme, gen)
    in_g = group_ids(width, groups, scheme, gen)
    mask = modular_mask(out_g, in_g, p_intra, p_inter, gen, inter_tile=inter_tile)
    sparse = SparseLinear(width, width, mask, in_groups=in_g, out_groups=out_g, generator=gen)
    dense = nn.Linear(width, width)
    sparse.to(device=device, dtype=dtype)
    dense.to(device=device, dtype=dtype)
    x = torch.randn(batch, width, generator=gen).to(device=device, dtype=dtype).requires_grad_(True)
    gy = torch.randn(batch, width, generator=gen).to(device=device, dtype=dtype)

    t0 = time.perf_counter()
    plan = cached_plan(sparse, device)
    build_ms = (time.perf_counter() - t0) * 1e3
    layers = {"dense": dense, "sparse": sparse}
    opts = {k: adam(m.parameters(), lr=1e-4) for k, m in layers.items()}
    times: dict[str, dict[str, list[float]]] = {m: {"dense": [], "sparse": []} for m in modes}
    for mode in modes:
        runs = {k: _runner(m, x, gy, mode, opts[k]) for k, m in layers.items()}
        for _ in range(warmup):
            for run in runs.values():
                run()
        for i in range(repeats):
            order = ("dense", "sparse") if i % 2 == 0 else ("sparse", "dense")
            for k in order:
                _sync(device)
                t = time.perf_counter()
                runs[k]()
                _sync(device)
                times[mode][k].append((time.perf_counter() - t) * 1e3)
    result: dict = {
        "width": width, "batch": batch, "in_features": width, "out_features": width,
        "groups": groups, "p_intra": p_intra, "p_inter": p_inter, "scheme": scheme,
        "inter_tile": inter_tile, "detected_tile": plan.tiles.size if plan and plan.tiles else 0,
        "density": float(mask.float().mean()), "dtype": str(dtype).replace("torch.", ""),
        "device": str(device), "threads": torch.get_num_threads(), "path": _path(sparse, x),
        "plan_build_ms": round(build_ms, 2), "repeats": repeats, "modes": {},
    }
    for mode in modes:
        d, s = times[mode]["dense"], times[mode]["sparse"]
        dm, sm = statistics.median(d), statistics.median(s)
        result["modes"][mode] = {
            "dense_ms": round(dm, 3), "sparse_ms": round(sm, 3), "ratio": round(dm / sm, 3),
            "ratio_median_of_pairs": round(statistics.median(a / b for a, b in zip(d, s)), 3),
        }
    return result
