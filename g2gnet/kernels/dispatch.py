"""Which path a SparseLinear runs (``PATHS``), chosen at every call by ``choose``:

- ``infer``: inference at batches up to 16, the weight-stationary kernel (one pass over the packed
  weights; at batch 1 its bytes are the limit);
- ``native``: the batched C++ kernels (training, and inference at larger batches), when the product
  is big enough to amortise the call and the layout's estimated cost is below the dense product's
  (``COST``); through the custom ops under torch.compile, tracing, autocast and torch.func, called
  directly in eager mode (``ops.linear_eager`` / ``ops.linear_nograd``: the same checks and kernels);
- otherwise the masked reference ``F.linear(x, weight, bias)``, which every path equals.

Switches, strongest first: ``reference_mode()`` or ``G2G_FAST=0`` (read at import): the
reference everywhere; ``layer.fast = False``: the reference; ``layer.fast = True``: the native
kernels whenever they can run (``infer`` or ``native``). The native paths run on the CPU in
float32 (autocast included: they compute in float32). On GPUs the masked product runs on the dense
GEMM units and was the faster path (results/bench/cuda-h200), so it is used there. (No path caches
a dense weight between calls: nothing tells a layer reliably that its weights changed, e.g. a fused
optimizer step does not move the parameters' version counters.)
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import torch
from torch import Tensor

from ..env import switch
from . import infer, native, ops

_state = threading.local()
_FAST_ENV = switch("G2G_FAST", True)


@dataclass(frozen=True)
class CostModel:
    """The dispatcher's numbers, in one place (measured: benchmarks/crossover.py)."""

    # Below these many weights the masked reference beat the batched kernels: training, then inference
    # at more than 16 rows, by the kernels' vector width in floats (``native.vector_width()``, the
    # build's widest vectors: where the crossover lies depends on the CPU). A width not measured takes
    # the AVX2 numbers, the larger ones.
    # AVX2 (8; Zen 3, results/bench/cpu/crossover.md): training from 512 x 512 (at 256 wide 0.53-0.76x
    # of nn.Linear against 0.51-0.58x; nothing is faster than nn.Linear below 512 x 512); inference
    # from 256 x 256 (three runs at 256 wide, means: batch 64 0.42x of nn.Linear against 0.40x, batch
    # 256 0.69x against 0.66x; each run within noise of the other path).
    # AVX-512 (16; Zen 5, results/bench/cpu-zen5-023e481/crossover.md, crossover-small-r1..3.md and
    # crossover-186dc0c.md: five runs at 128 and 256 wide, two at 64): training from 256 x 256 (at 256
    # wide the kernels 0.44-0.48x, 0.87-0.95x, 1.34-1.62x of nn.Linear at batch 8, 64, 256 against the
    # reference's 0.28-0.43x, 0.48-0.65x, 0.71-0.83x; at batch 1 a tie, 0.23-0.28x against
    # 0.15-0.32x); inference from 128 x 128 (at 128 wide batch 256 0.59-0.88x against 0.42-0.72x; at
    # batch 64 a tie, 0.40-0.43x against 0.25-0.49x: the machine's two phases; at 64 wide the
    # reference, 0.42-0.60x against 0.23-0.40x). Only Zen 5 was measured: other AVX-512 CPUs (Zen 4's
    # 256-bit units, Intel's) take these numbers too.
    min_weights: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({8: 1 << 18, 16: 1 << 16}))
    min_weights_inference: Mapping[int, int] = field(
        default_factory=lambda: MappingProxyType({8: 1 << 16, 16: 1 << 14}))
    value_cost: float = 2.5  # one inter-ensemble nonzero against one dense multiply-add (the blocks run near dense)
    fixed: float = 0.05  # the batched kernels' other work (gather, permutations), as a fraction of dense
    max_cost: float = 0.9  # take the batched kernels when their estimated cost is below this fraction of dense

    def min_total(self, grad: bool, width: int) -> int:
        """The fewest weights (in x out) for which the batched kernels run, training (``grad``) or
        inference, with vectors of ``width`` floats."""
        table = self.min_weights if grad else self.min_weights_inference
        return table.get(width, table[8])


COST = CostModel()


@contextlib.contextmanager
def reference_mode() -> Iterator[None]:
    """Run every SparseLinear through the masked reference ``F.linear(x, weight, bias)``."""
    prev = getattr(_state, "reference", False)
    _state.reference = True
    try:
        yield
    finally:
        _state.reference = prev


def _reference_forced() -> bool:
    return not _FAST_ENV or getattr(_state, "reference", False)


def _needs_grad(layer, x: Tensor) -> bool:
    """Whether autograd records ``layer(x)`` (grad mode first: no parameter is read when it is off)."""
    if not torch.is_grad_enabled():
        return False
    bias = layer._parameters.get("bias")
    return (x.requires_grad or any(p.requires_grad for p in layer._modules["packed"]._parameters.values())
            or (bias is not None and bias.requires_grad))


def choose(layer, x: Tensor) -> str | None:
    """The name of the native path (a key of ``PATHS``) that runs ``layer(x)``, or None for the
    masked reference. (Asked at every call: at batch 1 a layer's Python costs as much as a third of
    its kernel, and each step more after the kernel has filled the caches with weights, so the
    parameters are read from the module dicts directly, the cheap tests come first and serving,
    the commonest small call, is decided with the fewest.)"""
    flag = layer.fast
    if flag is False or not _FAST_ENV or getattr(_state, "reference", False):
        return None
    packed = layer._modules["packed"]
    if "parametrizations" in layer._modules or "parametrizations" in packed._modules:
        return None  # (torch.nn.utils.parametrize: the native paths read the stored tensors)
    values = packed._parameters["values"]
    shape = x.shape
    if not shape or 0 in shape:
        return None  # (a scalar, or an empty batch: the reference gives the empty result)
    if values.dtype is not torch.float32 or not (x.is_cpu and values.is_cpu):
        return None
    if x.dtype is not torch.float32 and not torch.is_autocast_enabled("cpu"):
        return None  # a mixed-dtype call fails in F.linear with PyTorch's own message
    if not native.available():
        return None
    rows = shape[0] if len(shape) == 2 else math.prod(shape[:-1])
    grad = _needs_grad(layer, x)
    if rows <= infer.INFER_MAX_BATCH and not grad:
        return "infer"  # streams the packed weights once: never more bytes than the dense weight
    if flag is True:
        return "native"
    total = layer.in_features * layer.out_features
    if total < COST.min_total(grad, native.vector_width()):
        return None
    intra = packed._parameters["intra"]
    cost = intra.numel() / total + COST.value_cost * values.numel() / total + COST.fixed
    return "native" if cost < COST.max_cost else None


def native_linear(layer, x: Tensor) -> Tensor:
    intra, values, bias = layer.intra, layer.values, layer.bias
    if _needs_grad(layer, x):
        if ops.eager_ok():  # eager training: the custom op's kernels without its dispatcher
            return ops.linear_eager(x, intra, values, bias, layer.packed.layout)
    elif ops.direct_ok():
        return ops.linear_nograd(x, intra, values, bias, layer.packed.layout)  # eager inference
    tensors, ints = layer.packed.op_args()
    return ops.linear(x, intra, values, bias, tensors, ints)


def native_infer(layer, x: Tensor) -> Tensor:
    bias = layer._parameters.get("bias")
    if not ops.direct_ok():  # the custom op, which a compiler, a tracer or a dispatch mode knows
        x2, lead = ops.as_rows(x)
        tensors, ints = layer.packed.op_args()
        return ops.from_rows(infer.linear_infer(x2, layer.intra, layer.values, bias, tensors, ints), lead)
    return infer.infer_eager(layer._modules["packed"], x, bias)  # the same kernel, no op dispatcher


PATHS = {"native": native_linear, "infer": native_infer}  # name -> (layer, x) -> y
