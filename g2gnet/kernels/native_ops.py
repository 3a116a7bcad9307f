"""Forward and backward of a planned G2G layer with the compiled CPU kernels (fp32, CPU).

Activations are handled in the transposed layout [features, Bp] (see ``_source``); the
forward returns a transposed *view* ``yT[:, :N].t()`` of shape [N, out], so the next G2G layer
reads its input rows without a transpose, and the input gradient is returned the same way.
"""

from __future__ import annotations

import ctypes

import torch

from .plan import Plan


# Batch columns per pass of the sparse kernels: the widest of 128 / 64 whose slice of the dense
# operand (rows x chunk floats) fits in L2_BUDGET, so a nonzero's random row read hits L2 while
# doing as many vector FMAs per index as possible. Measured on Zen 4 (1 MiB L2 per core): 128
# is best at 1024 rows (-10% vs 64), 64 at 2048 (-15% vs 128); 32 and 256 lose at both.
L2_BUDGET = 512 * 1024


def _chunk(dense_rows: int) -> int:
    return 128 if dense_rows * 128 * 4 <= L2_BUDGET else 64


def _p(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _padded(n: int) -> int:
    return (n + 15) // 16 * 16


def _ld(bp: int) -> int:
    # Row stride of the transposed activations. A stride of a multiple of 512 B maps the 64-column
    # chunk of every row to the same few L2 sets (the chunk then thrashes a quarter of L2); one
    # extra vector per row spreads the rows over all sets.
    return bp if bp <= 64 else bp + 16


def gather_t(lib: ctypes.CDLL, x2: torch.Tensor, perm: torch.Tensor | None, bp: int) -> torch.Tensor:
    """[n, Bp] = x2[:, perm].T, zero-padded; a row copy when x2 is already a transposed view."""
    n_rows, n = x2.shape
    ld = _ld(bp)
    out = torch.empty(n, ld, dtype=torch.float32)
    lib.g2g_gather_t(x2.data_ptr(), n_rows, x2.stride(0), x2.stride(1), _p(perm), n, out.data_ptr(),
                     ld, torch.get_num_threads())
    return out[:, :bp]


def pack(lib: ctypes.CDLL, plan: Plan, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Intra blocks [G, og, ig] (masked when not full) and inter values in CSR order."""
    w = weight.detach().contiguous()
    vals = torch.empty(plan.nnz_inter, dtype=torch.float32)
    if plan.identity and plan.block_mask is None:
        # Contiguous groups: the diagonal blocks are a strided view bmm accepts as is.
        n_in = plan.in_features
        wb = w.as_strided((plan.groups, plan.og, plan.ig), (plan.og * n_in + plan.ig, n_in, 1))
        lib.g2g_pack(w.data_ptr(), n_in, plan.out_features, plan.out_perm.data_ptr(), plan.og, plan.ig,
                     plan.in_perm.data_ptr(), None, plan.rowptr.data_ptr(), plan.ocols.data_ptr(),
                     vals.data_ptr(), torch.get_num_threads())
        return wb, vals
    wb = torch.empty(plan.out_features, plan.ig, dtype=torch.float32)
    lib.g2g_pack(w.data_ptr(), plan.in_features, plan.out_features, plan.out_perm.data_ptr(), plan.og,
                 plan.ig, plan.in_perm.data_ptr(), wb.data_ptr(), plan.rowptr.data_ptr(),
                 plan.ocols.data_ptr(), vals.data_ptr(), torch.get_num_threads())
    if plan.block_mask is not None:
        wb.mul_(plan.block_mask)  # weight is 0 there by contract; masking keeps the reference exact
    return wb.view(plan.groups, plan.og, plan.ig), vals


def take(lib: ctypes.CDLL, src: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    out = torch.empty(idx.numel(), dtype=src.dtype)
    lib.g2g_take(src.data_ptr(), idx.data_ptr(), idx.numel(), out.data_ptr(), torch.get_num_threads())
    return out


def _sparse_rows(lib: ctypes.CDLL, plan: Plan, transposed: bool, vals: torch.Tensor, x: torch.Tensor,
                 init: torch.Tensor, bias: torch.Tensor | None, dst: torch.Tensor | None,
                 out: torch.Tensor) -> None:
    """out[dst[r]] = init[r] + bias + (inter part, or its transpose) @ x, row by row.

    All of x, init, out are [rows, Bp] with unit column stride and any row stride."""
    nthreads = torch.get_num_threads()
    n_rows, bp = init.shape
    lds = (x.data_ptr(), x.stride(0), init.data_ptr(), init.stride(0), _p(bias), _p(dst), out.data_ptr(),
           out.stride(0), nthreads)
    tiles = plan.tiles
    if tiles is not None:
        tv = take(lib, vals, tiles.t_from_csr if transposed else tiles.from_csr)
        rowptr, cols = (tiles.t_rowptr, tiles.t_cols) if transposed else (tiles.rowptr, tiles.cols)
        lib.g2g_bsr_spmm(n_rows, bp, tiles.size, rowptr.data_ptr(), cols.data_ptr(), tv.data_ptr(), *lds)
        return
    if transposed:
        seg, ncb, cols, vals = plan.cseg, plan.ncb_t, plan.crows, take(lib, vals, plan.csc_from_csr)
    else:
        seg, ncb, cols = plan.seg, plan.ncb, plan.cols
    lib.g2g_spmm_cb(n_rows, bp, _chunk(x.shape[0]), ncb, seg.data_ptr(), cols.data_ptr(), vals.data_ptr(), *lds)


def forward(lib: ctypes.CDLL, plan: Plan, x2: torch.Tensor, weight: torch.Tensor,
            bias: torch.Tensor | None) -> tuple[torch.Tensor, tuple]:
    """y [N, out] (a transposed view) and what the backward needs."""
    n = x2.shape[0]
    bp = _padded(n)
    g = plan.groups
    xs = gather_t(lib, x2, None if plan.identity else plan.in_perm, bp)  # [in, Bp], sorted
    wb, vals = pack(lib, plan, weight)
    ys = torch.bmm(wb, xs.unflatten(0, (g, plan.ig))).view(plan.out_features, bp)
    # Unpermuting rows in the kernel's store is free; with the identity write over ys in place.
    out = ys if plan.identity else torch.empty_like(ys)
    b = None if bias is None else bias.detach().contiguous()
    _sparse_rows(lib, plan, False, vals, xs, ys, b, None if plan.identity else plan.out_perm, out)
    return out[:, :n].t(), (xs, wb, vals)


def backward(lib: ctypes.CDLL, plan: Plan, saved: tuple, gy2: torch.Tensor, need_x: bool,
             need_w: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    xs, wb, vals = saved
    n = gy2.shape[0]
    bp = xs.shape[1]
    g = plan.groups
    nthreads = torch.get_num_threads()
    gys = gather_t(lib, gy2, None if plan.identity else plan.out_perm, bp)  # [out, Bp], sorted
    gx = gw = None
    if need_x:
        dxs = torch.bmm(wb.transpose(1, 2), gys.unflatten(0, (g, plan.og))).view(plan.in_features, bp)
        out = dxs if plan.identity else torch.empty_like(dxs)
        _sparse_rows(lib, plan, True, vals, gys, dxs, None, None if plan.identity else plan.in_perm, out)
        gx = out[:, :n].t()
    if need_w:
        dwb = torch.bmm(gys.unflatten(0, (g, plan.og)), xs.unflatten(0, (g, plan.ig)).transpose(1, 2))
        dvals = torch.empty(plan.nnz_inter, dtype=torch.float32)
        tiles = plan.tiles
        if tiles is not None:  # tiles: 4x4 register blocks of whole tiles, near GEMM efficiency
            lib.g2g_bsr_sddmm(tiles.rowptr.numel() - 1, bp, tiles.size, tiles.rowptr.data_ptr(),
                              tiles.cols.data_ptr(), tiles.from_csr.data_ptr(), gys.data_ptr(), gys.stride(0),
                              xs.data_ptr(), xs.stride(0), dvals.data_ptr(), nthreads)
        else:
            lib.g2g_sddmm(plan.out_features, bp, plan.rowptr.data_ptr(), plan.cols.data_ptr(),
                          gys.data_ptr(), gys.stride(0), xs.data_ptr(), xs.stride(0), dvals.data_ptr(), nthreads)
        gw = torch.empty(plan.out_features, plan.in_features, dtype=torch.float32)
        lib.g2g_unpack(gw.data_ptr(), plan.in_features, plan.out_features, plan.out_perm.data_ptr(), plan.og,
                       plan.ig, plan.in_perm.data_ptr(), dwb.data_ptr(), _p(plan.block_mask),
                       plan.rowptr.data_ptr(), plan.ocols.data_ptr(), dvals.data_ptr(), nthreads)
    return gx, gw
