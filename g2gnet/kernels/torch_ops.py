"""Forward and backward of a planned G2G layer with PyTorch ops only (any device and dtype).

Used on CUDA (never compiled there), for non-fp32 dtypes, and on CPUs without a compiler.
Intra-group part: one bmm over the G diagonal blocks. Inter-group part: a CSR matrix
(MKL on CPU, cuSPARSE on CUDA) for the products and ``sampled_addmm`` for its weight gradient.
"""

from __future__ import annotations

import warnings

import torch

from .plan import Plan


def _sparse_csr(rowptr: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, size: tuple[int, int]):
    with warnings.catch_warnings():  # "CSR support is in beta" on every construction
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(rowptr, cols, vals, size, check_invariants=False)


def _csr(plan: Plan, vals: torch.Tensor, transposed: bool) -> torch.Tensor:
    if transposed:
        return _sparse_csr(plan.colptr, plan.crows.long(), vals[plan.csc_from_csr],
                           (plan.in_features, plan.out_features))
    return _sparse_csr(plan.rowptr, plan.cols.long(), vals, (plan.out_features, plan.in_features))


def _intra(plan: Plan, weight: torch.Tensor) -> torch.Tensor:
    wb = weight.detach().reshape(-1)[plan.flat_intra()]
    if plan.block_mask is not None:
        wb = wb * plan.block_mask
    return wb.view(plan.groups, plan.og, plan.ig)


def _inv(perm: torch.Tensor) -> torch.Tensor:
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device)
    return inv


def forward(plan: Plan, x2: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
    n = x2.shape[0]
    xs = x2.t() if plan.identity else x2.t()[plan.in_perm]  # [in, N], sorted inputs
    xs = xs.contiguous()
    wb = _intra(plan, weight)
    vals = weight.detach().reshape(-1)[plan.flat_inter()]
    ys = torch.bmm(wb, xs.view(plan.groups, plan.ig, n)).view(plan.out_features, n)
    if plan.nnz_inter:
        ys = ys + _csr(plan, vals, False) @ xs
    y = ys if plan.identity else ys[_inv(plan.out_perm)]
    if bias is not None:
        y = y + bias.detach()[:, None]
    return y.t(), (xs, wb, vals)


def backward(plan: Plan, saved: tuple, gy2: torch.Tensor, need_x: bool, need_w: bool):
    xs, wb, vals = saved
    n = gy2.shape[0]
    gys = (gy2.t() if plan.identity else gy2.t()[plan.out_perm]).contiguous()  # [out, N]
    gx = gw = None
    if need_x:
        dxs = torch.bmm(wb.transpose(1, 2), gys.view(plan.groups, plan.og, n)).view(plan.in_features, n)
        if plan.nnz_inter:
            dxs = dxs + _csr(plan, vals, True) @ gys
        gx = (dxs if plan.identity else dxs[_inv(plan.in_perm)]).t()
    if need_w:
        dwb = torch.bmm(gys.view(plan.groups, plan.og, n), xs.view(plan.groups, plan.ig, n).transpose(1, 2))
        if plan.block_mask is not None:
            dwb = dwb * plan.block_mask.view_as(dwb)
        gw = torch.zeros(plan.out_features * plan.in_features, dtype=gys.dtype, device=gys.device)
        gw[plan.flat_intra().reshape(-1)] = dwb.reshape(-1)
        if plan.nnz_inter:
            pattern = _csr(plan, torch.zeros_like(vals), False)
            dvals = torch.sparse.sampled_addmm(pattern, gys, xs.t(), beta=0.0).values()
            gw[plan.flat_inter()] = dvals
        gw = gw.view(plan.out_features, plan.in_features)
    return gx, gw
