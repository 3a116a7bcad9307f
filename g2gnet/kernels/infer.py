"""Inference at up to ``INFER_MAX_BATCH`` rows: the weight-stationary kernel, which walks a layer's
packed weights once per call (at batch 1 their bytes are the limit), as the custom op
``g2gnet::linear_infer`` (fake and CPU-autocast registrations, for torch.compile and autocast) and,
in eager mode, through ``_InferPlan``: the kernel bound to one layout version for one thread, whose
call checks and sets only its own tensors (``infer_eager``; ``chain.InferChain`` chains the plans of
an MLP's hidden layers). The checks are the batched ops' (``kernels.ops``)."""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import G2GError
from . import native
from .layout import Layout
from .ops import _check_args, _check_layout, _require_native, _workspace, as_rows, check_params, float32, from_rows, \
    unpack_layout

INFER_MAX_BATCH = 16  # the widest batch the inference kernel holds in registers


def infer_work(n_in: int) -> int:
    """Floats of scratch the inference kernel takes (its comment: two sorted copies of the input)."""
    return INFER_MAX_BATCH * (2 * n_in + 16)


def _infer(x: Tensor, intra: Tensor, values: Tensor, bias: Tensor | None, lay: Layout) -> Tensor:
    """y [N, out] = x Wᵀ + b by the weight-stationary inference kernel (arguments checked)."""
    n = x.shape[0]
    if x.stride(1) != 1:
        x = x.contiguous()
    y = torch.empty(n, lay.n_out, dtype=torch.float32)
    nt = min(torch.get_num_threads(), _max_threads(intra.numel(), lay))
    native.infer(n, x, x.stride(0), lay.in_perm, lay.n_out, lay.n_in, lay.og, lay.ig, intra, lay.block_mask,
                 lay.tile, lay.rowptr, lay.cols, 4 if lay.tile else lay.index_bytes, values, bias, lay.out_perm, y,
                 lay.n_out, _workspace("infer", infer_work(lay.n_in)), nt)
    return y


_INFER_BYTES_PER_THREAD = 256 * 1024


def _max_threads(intra_numel: int, lay: Layout) -> int:
    """Threads pay only when each has enough weight bytes to stream (else the fork costs more)."""
    weight_bytes = 4 * (intra_numel + lay.n_values) + lay.cols.numel() * lay.cols.element_size()
    return max(1, weight_bytes // _INFER_BYTES_PER_THREAD)


@torch.library.custom_op("g2gnet::linear_infer", mutates_args=(), device_types="cpu")
def linear_infer(x: Tensor, intra: Tensor, values: Tensor, bias: Tensor | None, layout: Sequence[Tensor],
                 meta: Sequence[int]) -> Tensor:
    """y = x Wᵀ + b for at most ``INFER_MAX_BATCH`` rows, without autograd (inference)."""
    lay = unpack_layout(layout, meta)
    _check_args(x, intra, values, bias, lay)
    if x.shape[0] > INFER_MAX_BATCH:
        raise G2GError(f"g2gnet op: linear_infer takes at most {INFER_MAX_BATCH} rows, got {x.shape[0]}")
    _require_native()
    return _infer(x, intra, values, bias, lay)


@linear_infer.register_fake
def _(x, intra, values, bias, layout, meta):
    return x.new_empty(x.shape[0], int(meta[0]))


torch.library.register_autocast("g2gnet::linear_infer", "cpu", torch.float32)


class _InferPlan:
    """The inference kernel bound to one layout version for one thread (eager inference): the
    layout is checked and its arguments set once; a call checks and sets only its own tensors.
    (Per thread: the ctypes call releases the GIL, so two threads must not share the struct.)
    ``relu``: the kernel applies a ReLU to its output (a model's hidden block, ``chain.InferChain``)."""

    def __init__(self, packed, relu: bool = False) -> None:
        lay = packed.layout
        _check_layout(lay)
        self.version, self.lay = packed.version, lay
        with torch.inference_mode(False):
            self.work = torch.empty(infer_work(lay.n_in))
        ptr = lambda t: None if t is None else t.data_ptr()  # noqa: E731
        self.args = native.InferArgs(
            in_perm=ptr(lay.in_perm), n_out=lay.n_out, n_in=lay.n_in, og=lay.og, ig=lay.ig, block_mask=ptr(lay.block_mask),
            T=lay.tile, rowptr=lay.rowptr.data_ptr(), cols=lay.cols.data_ptr(), index_bytes=4 if lay.tile else lay.index_bytes,
            out_perm=ptr(lay.out_perm), ldy=lay.n_out, work=self.work.data_ptr(), relu=int(relu))
        self.ref = ctypes.pointer(self.args)
        self.fn = native.get().g2g_infer_call
        self.ptrs: tuple | None = None  # (intra, values, bias) addresses as last set in ``args``
        self.rest: tuple | None = None  # (B, ldx, nthreads) as last set in ``args``
        self.max_threads = _max_threads(packed.intra.numel(), lay)

    def __call__(self, x: Tensor, intra: Tensor, values: Tensor, bias: Tensor | None) -> Tensor:
        x, ldx = self.rows(x)
        n = x.shape[0]
        y = torch.empty(n, self.lay.n_out)
        self.bind(intra, values, bias, n, ldx)
        a = self.args
        a.x, a.y = x.data_ptr(), y.data_ptr()
        self.fn(self.ref)
        return y

    def rows(self, x: Tensor) -> tuple[Tensor, int]:
        """(x as the kernel reads it, its row stride): x checked against the layout and made
        contiguous along its rows if it is not."""
        shape = x.shape
        if len(shape) != 2 or shape[1] != self.lay.n_in or not 1 <= shape[0] <= INFER_MAX_BATCH or not x.is_cpu:
            raise G2GError(f"g2gnet op: x must be [N <= {INFER_MAX_BATCH}, {self.lay.n_in}] on the CPU, got "
                           f"{tuple(shape)} on {x.device}")
        if x.is_contiguous():
            return x, shape[1]
        if x.stride(1) != 1:
            return x.contiguous(), shape[1]
        return x, x.stride(0)

    def bind(self, intra: Tensor, values: Tensor, bias: Tensor | None, n: int, ldx: int) -> None:
        """Sets the fields of a call on ``n`` rows ``ldx`` floats apart with these parameters (all
        but the pointers x and y), after checking them. The parameters' dtype, shape and contiguity
        are read at every call (``p.data = ...`` swaps a parameter's memory and metadata without a
        new version, possibly at the address just freed); the fields are set only when they change
        (a ctypes field costs ~0.15 µs to set, and batch 1 counts every µs)."""
        check_params(intra, values, bias, self.lay)
        a = self.args
        ptrs = (intra.data_ptr(), values.data_ptr(), None if bias is None else bias.data_ptr())
        if ptrs != self.ptrs:
            a.intra, a.vals, a.bias = self.ptrs = ptrs
        rest = (n, ldx, min(torch.get_num_threads(), self.max_threads))
        if rest != self.rest:
            a.B, a.ldx, a.nthreads = self.rest = rest


def infer_eager(packed, x: Tensor, bias: Tensor | None) -> Tensor:
    """``linear_infer`` without the op dispatcher, for eager inference, where a call's fixed cost is
    the batch-1 budget: the layout is checked once per layout version, the tensors every call; x
    [..., in] with at most ``INFER_MAX_BATCH`` rows."""
    plans = packed.infer_plans
    key = threading.get_ident()
    plan = plans.get(key)
    if plan is None or plan.version != packed.version:
        plan = plans[key] = _InferPlan(packed)
    params = packed._parameters
    if x.dim() == 2 and x.dtype is torch.float32:  # the common call, without the reshapes
        return plan(x, params["intra"], params["values"], bias)
    x2, lead = as_rows(x)
    return from_rows(plan(float32(x2), params["intra"], params["values"], bias), lead)
