"""When a SparseLinear takes the fast path, and the cached plan it uses.

Switches, strongest first:
- ``reference_mode()`` context manager, or ``G2GNET_FAST=0``: masked reference everywhere;
- ``layer.fast = False`` / ``True`` (class default ``None`` = automatic);
- automatic: G2G layers (``in_groups``/``out_groups`` set, equal groups) whose estimated fast
  cost is below the reference's, and whose product is big enough to amortise the call overhead.
``G2GNET_NO_NATIVE=1`` keeps the fast path but uses PyTorch ops instead of compiled kernels.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import torch
import torch.nn as nn

from . import native
from .plan import Plan, build_plan

_state = threading.local()

# Cost of one inter-group nonzero relative to one dense multiply-add (measured, 2-core Zen 4):
# compiled kernels ~2x, torch CSR ~4-5x; the bmm part runs near dense efficiency.
_INTER_COST_NATIVE = 2.5
_INTER_COST_TORCH = 5.0
# Block counts tried, in order, for masks that come without group ids.
IMPLICIT_GROUPS = (8, 4, 2)
_MIN_MACS = 1 << 22  # below ~4M multiply-adds the call overhead of the fast path dominates


@contextlib.contextmanager
def reference_mode() -> Iterator[None]:
    """Run every SparseLinear through the masked reference ``F.linear(x, weight*mask, bias)``."""
    prev = getattr(_state, "reference", False)
    _state.reference = True
    try:
        yield
    finally:
        _state.reference = prev


def fast_disabled() -> bool:
    return getattr(_state, "reference", False) or os.environ.get("G2GNET_FAST", "") in ("0", "false", "off")


def _groups(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(out_groups, in_groups) to plan with: the layer's own, or for a mask without groups (ER,
    user masks) contiguous blocks: then the groups are only an execution detail, the diagonal
    blocks run as a masked bmm and the rest as sparse rows; the result is the same."""
    if layer.in_groups is not None and layer.out_groups is not None:
        return layer.out_groups, layer.in_groups
    implicit = layer.__dict__.get("_g2g_implicit_groups")
    if implicit is None:
        n_out, n_in = layer.mask.shape
        g = next((g for g in IMPLICIT_GROUPS if n_out % g == 0 and n_in % g == 0), None)
        implicit = () if g is None else (torch.arange(n_out) // (n_out // g), torch.arange(n_in) // (n_in // g))
        layer.__dict__["_g2g_implicit_groups"] = implicit
    return implicit or None


def _key(layer: nn.Module) -> tuple:
    # Version counters catch in-place mask edits that bypass set_mask_/_mask_changed.
    return tuple((t.data_ptr(), t._version) for t in (layer.mask, *(_groups(layer) or ())))


def cached_plan(layer: nn.Module, device: torch.device) -> Plan | None:
    """The layer's plan on ``device``, (re)built when the mask or group ids changed."""
    cache = layer.__dict__.get("_g2g_plan_cache")
    key = _key(layer)
    if cache is None or cache["key"] != key:
        groups = _groups(layer)
        plan = None if groups is None else build_plan(layer.mask, *groups)
        cache = {"key": key, "cpu": plan}
        layer.__dict__["_g2g_plan_cache"] = cache
    plan = cache["cpu"]
    if plan is None or device.type == "cpu":
        return plan
    if str(device) not in cache:
        cache[str(device)] = plan.to(device)
    return cache[str(device)]


def invalidate(layer: nn.Module) -> None:
    layer.__dict__.pop("_g2g_plan_cache", None)


def choose(layer: nn.Module, x: torch.Tensor) -> Plan | None:
    """The plan to run ``layer(x)`` with, or None for the masked reference."""
    flag = getattr(layer, "fast", None)
    if flag is False or fast_disabled():
        return None
    w = layer.weight
    if x.dtype != w.dtype or x.device != w.device or not w.dtype.is_floating_point or x.dim() == 0:
        return None
    if flag is not True:  # automatic: small products gain nothing, and need no plan lookup
        rows = x.numel() // max(x.shape[-1], 1)
        if rows * layer.in_features * layer.out_features < _MIN_MACS:
            return None
    if flag is not True and w.device.type != "cpu":
        # On GPUs the masked product runs on the dense GEMM units; the PyTorch sparse ops of the
        # fast path (bmm + cuSPARSE) were slower there (see results/bench/cuda-*), so automatic
        # choice keeps the reference. ``layer.fast = True`` still forces the fast path.
        return None
    plan = cached_plan(layer, w.device)
    if plan is None or flag is True:
        return plan
    native_ok = w.device.type == "cpu" and w.dtype == torch.float32 and native.get() is not None
    per_nnz = _INTER_COST_NATIVE if native_ok else _INTER_COST_TORCH
    cost = 1.0 / plan.groups + per_nnz * plan.inter_density + 0.05
    if plan.block_mask is not None:
        cost += 0.02  # masking the blocks
    return plan if cost < 0.9 else None
