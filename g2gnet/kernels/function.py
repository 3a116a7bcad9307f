"""The custom autograd Function of the fast path and its backend choice (kernels or PyTorch)."""

from __future__ import annotations

import ctypes

import torch
from torch.autograd.function import once_differentiable

from . import native, native_ops, torch_ops
from .plan import Plan


def _native_lib(x: torch.Tensor, weight: torch.Tensor) -> ctypes.CDLL | None:
    # The compiled kernels are fp32 CPU only; everything else (CUDA, fp64, bf16) uses PyTorch ops.
    if x.device.type != "cpu" or weight.dtype != torch.float32 or x.dtype != torch.float32:
        return None
    return native.get()


class G2GLinearFunction(torch.autograd.Function):
    """y = x (weight ⊙ mask)ᵀ + bias for a 2-D x, computed from the plan of the mask.

    The weight gradient is dense [out, in] and exactly zero off the mask, like the reference.
    """

    @staticmethod
    def forward(ctx, x2: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, plan: Plan,
                lib: ctypes.CDLL | None) -> torch.Tensor:
        if lib is not None:
            y, saved = native_ops.forward(lib, plan, x2, weight, bias)
        else:
            y, saved = torch_ops.forward(plan, x2, weight, bias)
        ctx.plan, ctx.lib, ctx.saved = plan, lib, saved
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, gy: torch.Tensor):
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if ctx.lib is not None:
            gx, gw = native_ops.backward(ctx.lib, ctx.plan, ctx.saved, gy, need_x, need_w)
        else:
            gx, gw = torch_ops.backward(ctx.plan, ctx.saved, gy, need_x, need_w)
        gb = gy.sum(0) if (need_b and ctx.has_bias) else None
        ctx.saved = None
        return gx, gw, gb, None, None


def g2g_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, plan: Plan,
               use_native: bool = True) -> torch.Tensor:
    """Fast masked linear for any leading dims of x ([..., in] -> [..., out])."""
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    if x2.shape[0] == 0:
        return x.new_zeros(*lead, weight.shape[0])
    lib = _native_lib(x2, weight) if use_native else None
    y = G2GLinearFunction.apply(x2, weight, bias, plan, lib)
    return y.unflatten(0, lead) if len(lead) != 1 else y
