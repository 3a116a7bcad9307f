"""Counting what a model costs: active parameters, FLOPs on active weights, topology statistics.

FLOPs here are theoretical (2 per multiply-add on a non-zero weight), never measured time.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .layers import SparseLinear, sparse_layers
from .packed import PackedWeight


def active_parameters(model: nn.Module) -> int:
    """Parameters that can be non-zero: a SparseLinear counts its active connections and its bias,
    not the storage behind them (``sum(p.numel())`` also counts the entries of stored blocks that
    the mask holds at 0 and the room DST reserves); everything else counts whole."""
    total = 0
    for module in model.modules():
        if isinstance(module, SparseLinear):
            total += module.nnz + (module.bias.numel() if module.bias is not None else 0)
        elif not isinstance(module, PackedWeight):  # counted by its SparseLinear
            total += sum(p.numel() for p in module.parameters(recurse=False))
    return total


def total_parameters(model: nn.Module) -> int:
    """Stored parameter entries, ``sum(p.numel())``: for sparse layers more than the active ones
    (see ``active_parameters``)."""
    return sum(p.numel() for p in model.parameters())


def macs_per_sample(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass of one sample, on active weights only."""
    macs = 0
    hooks = []

    def count(module: nn.Module, inputs, output) -> None:
        nonlocal macs
        if isinstance(module, SparseLinear):
            macs += module.nnz * (output.numel() // output.shape[-1])
        elif isinstance(module, nn.Linear):
            macs += module.weight.numel() * (output.numel() // output.shape[-1])
        elif isinstance(module, nn.Conv2d):
            per_position = module.weight[0].numel()
            macs += per_position * output.numel()

    for m in model.modules():
        if isinstance(m, (SparseLinear, nn.Linear, nn.Conv2d)):
            hooks.append(m.register_forward_hook(count))
    try:
        p = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=p.device, dtype=p.dtype))
    finally:
        for h in hooks:
            h.remove()
    return macs


def sparse_density(model: nn.Module) -> float | None:
    """Active fraction over all SparseLinear weights together (None for a dense model)."""
    layers = sparse_layers(model)
    if not layers:
        return None
    return sum(l.nnz for _, l in layers) / sum(l.mask.numel() for _, l in layers)


def intra_fraction(layer: SparseLinear) -> float | None:
    """Fraction of a G2G layer's active connections that lie inside an ensemble."""
    if layer.in_groups is None or layer.out_groups is None:
        return None
    same = layer.out_groups[:, None] == layer.in_groups[None, :]
    nnz = layer.nnz
    return float(torch.count_nonzero(layer.mask & same)) / nnz if nnz else 0.0


def model_summary(model: nn.Module, input_shape: tuple[int, ...]) -> dict:
    """The cost figures stored in every run's summary.json."""
    macs = macs_per_sample(model, input_shape)
    return {
        "active_params": active_parameters(model),
        "total_params": total_parameters(model),
        "density": sparse_density(model),
        "macs_per_sample": macs,
        "flops_per_sample": 2 * macs,
    }
