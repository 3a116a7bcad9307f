"""The fast path of a G2G layer as PyTorch custom ops (SPEC §7): ``g2gnet::linear_fwd`` and
``g2gnet::linear_bwd``, with fake (meta) implementations, an autograd registration and CPU autocast
(computed in float32), so ``torch.compile``, autocast and ``opcheck`` treat them like any op. Eager
calls skip the op dispatcher and run the same checks and kernels directly (``linear_eager`` with
autograd, ``linear_nograd`` without).

Every tensor is checked here, at the op boundary, before a pointer reaches the C++ kernels: device,
dtype, rank, shape against the layout, and the strides the kernels rely on. A violation is a
``G2GError`` naming the argument, never undefined behaviour.

Layout of a call: ``layout`` holds the ``Layout`` tensors in ``Layout.TENSORS`` order (an empty
tensor for a missing permutation or block mask), ``meta`` its ints in ``Layout.INTS`` order.
Activations travel transposed inside the ops, [features, Bp] (see the C++ file); what they return
is [N, features] and contiguous, as nn.Linear's (the forward also returns ``xs``, the permuted
transposed input, which autograd saves for the backward).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import G2GError
from ..malloc import huge
from . import native
from .layout import Layout

# Batch columns per pass of the CSR product: the widest of 128 / 64 / 32 whose slice of the dense
# operand (rows x chunk floats) fits in L2_BUDGET, so a nonzero's random row read hits L2 while doing
# as many vector FMAs per index as possible (the kernel caps it at its register block). Zen 4 (1 MiB
# L2 per core): 128 is best at 1024 rows (-10% vs 64), 64 at 2048 (-15% vs 128); Zen 3 (512 KiB):
# 64 at 2048 (-5% vs 32), 32 at 4096 (-8% vs 64).
L2_BUDGET = 512 * 1024


def _chunk(dense_rows: int) -> int:
    return next((c for c in (128, 64) if dense_rows * c * 4 <= L2_BUDGET), 32)


def padded(n: int) -> int:
    """n batch columns as the kernels take them: rounded up to the build's vector width (AVX2: 8).
    A fixed 16 padded batch 17-24 to 32: rounding to 8 is 1.02-1.09x faster at batch 17-40
    element-wise and 1.10-1.38x with tiles of 32 (inference, 1024 and 2048 wide,
    ``python benchmarks/padding_ab.py``, results/bench/cpu/padding-ab.txt)."""
    w = native.vector_width()
    return (n + w - 1) // w * w


def row_stride(bp):
    # A row stride of a multiple of 512 B maps every row's chunk to the same few L2 sets; one extra
    # vector per row spreads the rows over all sets.
    return bp if bp <= 64 else bp + 16


_INDEX_DTYPES = {"out_perm": torch.int64, "in_perm": torch.int64, "block_mask": torch.bool,
                 "rowptr": torch.int64, "cols": torch.int32, "t_rowptr": torch.int64, "t_rows": torch.int32,
                 "t_index": torch.int32}
_CSR_COLS = (torch.int16, torch.int32)


def unpack_layout(layout: Sequence[Tensor], meta: Sequence[int]) -> Layout:
    try:
        return Layout.from_op_args(layout, meta)
    except G2GError as e:
        raise G2GError(f"g2gnet op: {e}") from None


def _check(name: str, t: Tensor, dtype: torch.dtype, shape: tuple | None = None, contiguous: bool = True) -> None:
    if t.device.type != "cpu":
        raise G2GError(f"g2gnet op: {name} is on {t.device}; the native kernels run on the CPU")
    if t.dtype != dtype:
        raise G2GError(f"g2gnet op: {name} has dtype {t.dtype}, expected {dtype}")
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise G2GError(f"g2gnet op: {name} has shape {tuple(t.shape)}, expected {tuple(shape)}")
    if contiguous and not t.is_contiguous():
        raise G2GError(f"g2gnet op: {name} must be contiguous, got strides {t.stride()}")


def _check_layout(lay: Layout) -> None:
    if lay.checked:
        return
    rows = lay.n_out // lay.tile if lay.tile else lay.n_out
    cols = lay.n_in // lay.tile if lay.tile else lay.n_in
    n = lay.n_values // (lay.tile * lay.tile) if lay.tile else lay.n_values
    n_t = n if lay.tile else 0
    shapes = {"out_perm": (lay.n_out,), "in_perm": (lay.n_in,), "block_mask": lay.intra_shape,
              "rowptr": (rows + 1,), "cols": (n,), "t_rowptr": (cols + 1,), "t_rows": (n_t,), "t_index": (n_t,)}
    for name in Layout.TENSORS:
        t = getattr(lay, name)
        if t is None:
            continue
        dtype = _INDEX_DTYPES[name]
        if name == "cols" and not lay.tile and t.dtype in _CSR_COLS:
            dtype = t.dtype  # int16 or int32 column indices
        _check(f"layout.{name}", t, dtype, shapes[name])
    lay.checked = True


def params_ok(intra: Tensor, values: Tensor, bias: Tensor | None, lay: Layout) -> bool:
    """``check_params`` as one expression, the common passing case (a call's fixed cost counts at
    small batches: each ``_check`` reads four attributes of a Parameter)."""
    return (intra.dtype is torch.float32 and intra.shape == lay.intra_shape and intra.is_contiguous()
            and values.dtype is torch.float32 and values.dim() == 1 and values.shape[0] >= lay.n_values
            and values.is_contiguous() and intra.is_cpu and values.is_cpu
            and (bias is None or (bias.dtype is torch.float32 and bias.dim() == 1 and bias.shape[0] == lay.n_out
                                  and bias.is_cpu and bias.is_contiguous())))


def check_params(intra: Tensor, values: Tensor, bias: Tensor | None, lay: Layout) -> None:
    """A layer's parameters against its layout: a ``G2GError`` naming the first that does not fit."""
    if params_ok(intra, values, bias, lay):
        return
    _check("intra", intra, torch.float32, lay.intra_shape)
    _check("values", values, torch.float32)
    if values.dim() != 1 or values.numel() < lay.n_values:
        raise G2GError(f"g2gnet op: values must be 1-D with at least {lay.n_values} entries, got {tuple(values.shape)}")
    if bias is not None:
        _check("bias", bias, torch.float32, (lay.n_out,))
    raise G2GError("g2gnet op: a parameter does not match its layout")  # (params_ok and the checks disagree)


def check_x(x: Tensor, lay: Layout) -> None:
    if x.dim() != 2 or x.shape[1] != lay.n_in or x.shape[0] == 0:
        raise G2GError(f"g2gnet op: x must be [N, {lay.n_in}] with N >= 1, got {tuple(x.shape)}")
    _check("x", x, torch.float32, contiguous=False)
    if x.stride(0) < 0 or x.stride(1) < 0:
        raise G2GError("g2gnet op: x must not have negative strides")


def _check_args(x: Tensor, intra: Tensor, values: Tensor, bias: Tensor | None, lay: Layout, layout: bool = True) -> None:
    check_x(x, lay)
    check_params(intra, values, bias, lay)
    if layout:
        _check_layout(lay)


def _require_native() -> None:
    if not native.available():
        raise G2GError(f"g2gnet op: the native kernels are unavailable ({native.error() or 'disabled'})")


def gather_t(x: Tensor, perm: Tensor | None, bp: int, scratch: bool = False,
             relu_out: Tensor | None = None) -> Tensor:
    """[n, Bp] = x[:, perm].T, zero-padded, with the padded row stride (in a workspace with
    ``scratch``: for a temporary); with ``relu_out`` (x's shape and strides), x is the gradient of
    that ReLU output and the result the gradient of its input."""
    n_rows, n = x.shape
    # (the stride of a dimension of size 1 is never used)
    if relu_out is not None and (relu_out.shape != x.shape or any(
            a != b for a, b, size in zip(relu_out.stride(), x.stride(), x.shape) if size > 1)):
        raise G2GError(f"gather_t: a ReLU output {tuple(relu_out.shape)} with strides {relu_out.stride()} "
                       f"for a gradient {tuple(x.shape)} with strides {x.stride()}")
    ld = row_stride(bp)
    out = _workspace("gather", n * ld).view(n, ld) if scratch else huge(torch.empty(n, ld, dtype=torch.float32))
    native.gather_t(x, n_rows, x.stride(0), x.stride(1), perm, n, out, out.stride(0), torch.get_num_threads(),
                    relu_out)
    return out[:, :bp]


def _product(lay: Layout, transposed: bool, intra: Tensor, values: Tensor, x: Tensor, bias: Tensor | None,
             dst: Tensor | None, out: Tensor, relu: bool = False, scratch: str = "blocks") -> None:
    """out[dst[r]] = bias + (W @ x)[r], or (Wᵀ @ x)[r] with ``transposed``, for every sorted row r of
    the layer's whole weight W (blocks and inter part; dst None: row r itself), through a ReLU with
    ``relu``. Tiled layouts run the blocks in the BSR kernel's pass (no batched matmul result to read
    back) in the forward; otherwise one batched matmul, into the workspace ``scratch``, whose result
    the CSR or BSR kernel adds to.
    (2048 wide, tiles 32, interleaved in one process, ``benchmarks/fused_blocks_ab.py``: the forward
    product with its blocks in the BSR pass 1.00-1.07x the matmul and read-back, the input gradient's
    0.97x: its transposed blocks are read across rows.)"""
    blocks = _seen_blocks(lay, intra, transposed)
    if lay.tile and not transposed:
        _sparse_rows(lay, False, values, x, None, bias, dst, out, relu, blocks)
        return
    _sparse_rows(lay, transposed, values, x, _block_product(lay, blocks, x, scratch), bias, dst, out, relu)


def _seen_blocks(lay: Layout, intra: Tensor, transposed: bool) -> Tensor | None:
    """The masked diagonal blocks as a product sees them: [G, og, ig], or (transposed) [G, ig, og],
    a view; None without blocks."""
    if not lay.n_groups:
        return None
    blocks = _masked(intra, lay)
    return blocks.transpose(1, 2) if transposed else blocks


def _block_product(lay: Layout, blocks: Tensor | None, x: Tensor, scratch: str = "blocks") -> Tensor | None:
    """The blocks' product (``_seen_blocks``) with x [features, Bp], in the workspace ``scratch``
    [rows, Bp] in sorted row order; None without blocks."""
    if blocks is None:
        return None
    g, rows, side = blocks.shape
    return _bmm_into(scratch, blocks, _blocks(lay, x, side)).view(g * rows, x.shape[1])


def _sparse_rows(lay: Layout, transposed: bool, values: Tensor, x: Tensor, init: Tensor | None,
                 bias: Tensor | None, dst: Tensor | None, out: Tensor, relu: bool = False,
                 blocks: Tensor | None = None) -> None:
    """out[dst[r]] = init[r] + bias + (inter part, or its transpose) @ x for every sorted row r
    (init None = 0; out may be init itself: each row is read before it is written), through a ReLU
    with ``relu``. ``blocks`` (tiled layouts only): the masked diagonal blocks as this product sees them,
    [G, og, ig] or (transposed) [G, ig, og], any strides inside a group, added in the same pass."""
    nt = torch.get_num_threads()
    n_rows, bp = out.shape
    io = dict(X=x, ldx=x.stride(0), init=init, ldi=0 if init is None else init.stride(0), bias=bias, dst=dst, Y=out,
              ldy=out.stride(0), nthreads=nt, relu=relu)
    if lay.tile:
        if blocks is not None and blocks.stride(0) != lay.og * lay.ig:  # the kernel's group stride
            raise G2GError(f"g2gnet op: blocks need a group stride of {lay.og * lay.ig}, got {blocks.stride(0)}")
        bsr, bsc = (0, 0) if blocks is None else (blocks.stride(1), blocks.stride(2))
        blk = dict(blk=blocks, og=lay.og, ig=lay.ig, bsr=bsr, bsc=bsc)
        if transposed:
            native.bsr_spmm(n_rows, bp, lay.tile, 1, lay.t_rowptr, lay.t_rows, lay.t_index, values, **blk, **io)
        else:
            native.bsr_spmm(n_rows, bp, lay.tile, 0, lay.rowptr, lay.cols, None, values, **blk, **io)
        return
    if blocks is not None:
        raise G2GError("g2gnet op: blocks in the sparse pass need a tiled layout")
    if transposed:
        cols, _, vals = _transposed(lay, values, nt, offsets=False)
        rowptr = lay.t_rowptr
    else:
        vals, rowptr, cols = values, lay.rowptr, lay.cols
    native.csr_spmm(n_rows, bp, _chunk(x.shape[0]), rowptr, cols, lay.index_bytes, vals, **io)


def _transposed(lay: Layout, values: Tensor, nt: int, offsets: bool = True) -> tuple[Tensor, Tensor | None, Tensor]:
    """(rows, places within their CSR rows, values) of the element-wise inter part's transposed
    pattern (rows by ``lay.t_rowptr``). A layout that keeps its pattern (``Layout.transposed``: a
    PackedWeight's, rebuilt whenever the mask changes) builds it once (a counting sort by column)
    and from then on only gathers the values in its order; any other builds it now in workspaces
    (without the places unless ``offsets``: two arrays to write, not three).
    2048 wide, 2 threads, as fractions of one dense matmul: the pattern with values and 4-byte CSR
    places, built at every backward, 0.13-0.24; the gather 0.05-0.06 (``benchmarks/kept_pattern_ab.py``).
    Kept, the pattern costs 4 bytes per entry with int16 indices; the values are a tensor of the
    caller's backward, freed after it (a workspace would hold 4 bytes per entry of the widest layer
    through the optimizer's step, where the training peak is: perf-memory's 256-257 MiB, not 244-249)."""
    vals = huge(torch.empty(lay.n_values))
    if lay.transposed is not None:
        rows, offs = lay.transposed
        native.csr_gather(lay.n_values, rows, offs, lay.index_bytes, lay.rowptr, values, vals, nt)
        return rows, offs, vals
    if lay.keep_transposed:
        rows = torch.empty(lay.n_values, dtype=lay.cols.dtype)
        offs = torch.empty(lay.n_values, dtype=lay.cols.dtype)
    else:
        rows = _workspace("t_cols", lay.n_values, lay.cols.dtype)
        offs = _workspace("t_offs", lay.n_values, lay.cols.dtype) if offsets else None
    native.csr_transpose(lay.n_out, lay.n_in, lay.rowptr, lay.cols, lay.index_bytes, values, lay.t_rowptr, rows,
                         vals, offs, nt)
    if lay.keep_transposed:
        lay.transposed = (rows, offs)
    return rows, offs, vals


_scratch = threading.local()


def _workspace(name: str, numel: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """A per-thread scratch buffer reused by every call (grown when too small). Only for
    temporaries that die inside one op call: re-allocating them at every layer of every step
    fragments the heap (a G2G MLP's step frees tens of MiB of 4-9 MiB temporaries)."""
    ws = getattr(_scratch, "buffers", None)
    if ws is None:
        ws = _scratch.buffers = {}
    t = ws.get(name)
    if t is None or t.numel() < numel or t.dtype != dtype:
        with torch.inference_mode(False):  # a buffer first made under inference_mode serves training too
            t = ws[name] = torch.empty(numel, dtype=dtype)
    return t[:numel]


def _bmm_into(name: str, a: Tensor, b: Tensor) -> Tensor:
    out = _workspace(name, a.shape[0] * a.shape[1] * b.shape[2]).view(a.shape[0], a.shape[1], b.shape[2])
    return torch.bmm(a, b, out=out)


def _padded_rows(name: str, n_rows: int, bp: int) -> Tensor:
    """A workspace [n_rows, Bp] with the padded row stride: the kernels' transposed result."""
    ld = row_stride(bp)
    return _workspace(name, n_rows * ld).view(n_rows, ld)[:, :bp]


def _untransposed(t: Tensor, n: int) -> Tensor:
    """[n, features], contiguous, from a transposed result [features, >= n]: what callers get, as
    from nn.Linear (a transposed view made some consumers ten times slower, e.g. a dense
    classifier's matmul)."""
    out = huge(torch.empty(n, t.shape[0]))
    native.gather_t(t, t.shape[0], t.stride(0), 1, None, n, out, t.shape[0], torch.get_num_threads())
    return out


def _masked(intra: Tensor, lay: Layout) -> Tensor:
    """Block entries the mask turns off are 0 by contract; masking them costs 1/Bp of the bmm
    and keeps the result right even if someone wrote into them."""
    return intra if lay.block_mask is None else intra * lay.block_mask


def _blocks(lay: Layout, t: Tensor, side: int) -> Tensor:
    """[G, side-size, Bp] view of a [features, Bp] tensor in sorted order."""
    return t.unflatten(0, (lay.n_groups, side))


def _forward(x: Tensor, intra: Tensor, values: Tensor, bias: Tensor | None, lay: Layout,
             keep_xs: bool) -> tuple[Tensor, Tensor]:
    """(y, xs) of the batched forward (arguments checked). ``keep_xs``: the sorted, transposed input
    is a tensor of its own (autograd saves it); else it lives in a workspace (valid until the next
    call on this thread)."""
    n = x.shape[0]
    bp = padded(n)
    # Outputs first, temporaries last: freed temporaries then sit at the top of the heap, where
    # the allocator can give them back, not in holes between long-lived tensors.
    xs = gather_t(x, lay.in_perm, bp, scratch=not keep_xs)  # [in, Bp], sorted inputs
    out = _padded_rows("out", lay.n_out, bp)
    _product(lay, False, intra, values, xs, bias, lay.out_perm, out)  # blocks + inter + bias, unpermuted
    return _untransposed(out, n), xs


@torch.library.custom_op("g2gnet::linear_fwd", mutates_args=(), device_types="cpu")
def linear_fwd(x: Tensor, intra: Tensor, values: Tensor, bias: Tensor | None, layout: Sequence[Tensor],
               meta: Sequence[int]) -> tuple[Tensor, Tensor]:
    """y = x Wᵀ + b for the layer whose connections ``layout`` describes; returns (y, xs)."""
    return _checked_forward(x, intra, values, bias, unpack_layout(layout, meta))


def _checked_forward(x: Tensor, intra: Tensor, values: Tensor, bias: Tensor | None,
                     lay: Layout) -> tuple[Tensor, Tensor]:
    """``linear_fwd`` on an unpacked layout: the arguments checked, then (y, xs)."""
    _check_args(x, intra, values, bias, lay)
    _require_native()
    return _forward(x, intra, values, bias, lay, keep_xs=True)


@linear_fwd.register_fake
def _(x, intra, values, bias, layout, meta):
    n_out, n_in = int(meta[0]), int(meta[1])
    n = x.shape[0]
    bp = padded(n)
    ld = row_stride(bp)
    return x.new_empty((n, n_out)), x.new_empty_strided((n_in, bp), (ld, 1))


@torch.library.custom_op("g2gnet::linear_bwd", mutates_args=(), device_types="cpu")
def linear_bwd(gy: Tensor, xs: Tensor, intra: Tensor, values: Tensor, layout: Sequence[Tensor],
               meta: Sequence[int], need_x: bool, need_w: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(grad x, grad intra, grad values); the ones not asked for are empty."""
    return _backward_impl(gy, xs, intra, values, unpack_layout(layout, meta), need_x, need_w)


def _backward_impl(gy: Tensor, xs: Tensor, intra: Tensor, values: Tensor, lay: Layout, need_x: bool,
                   need_w: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``linear_bwd`` on an unpacked layout (arguments checked here)."""
    if gy.dim() != 2 or gy.shape[1] != lay.n_out or gy.shape[0] == 0:
        raise G2GError(f"g2gnet op: grad of y must be [N, {lay.n_out}] with N >= 1, got {tuple(gy.shape)}")
    _check("grad y", gy, torch.float32, contiguous=False)
    n = gy.shape[0]
    bp = padded(n)
    _check("xs", xs, torch.float32, (lay.n_in, bp), contiguous=False)
    if xs.stride(1) != 1:
        raise G2GError("g2gnet op: xs must have unit column stride")
    check_params(intra, values, None, lay)
    _check_layout(lay)
    _require_native()
    nt = torch.get_num_threads()
    # Outputs (they outlive this call: gradients) first, temporaries last (see linear_fwd).
    gi, gv = _weight_grad_buffers(lay, values) if need_w else (None, None)
    gys = gather_t(gy, lay.out_perm, bp, scratch=True)  # [out, Bp], sorted
    gxs = _padded_rows("gx", lay.n_in, bp) if need_x else None
    _grads_into(lay, intra, values, gys, xs, lay.in_perm, gxs, gi, gv, nt)
    gx = None if gxs is None else _untransposed(gxs, n)
    return tuple(gy.new_empty(0) if t is None else t for t in (gx, gi, gv))


def _weight_grad_buffers(lay: Layout, values: Tensor) -> tuple[Tensor, Tensor]:
    """New (grad intra, grad values) tensors for ``_grads_into`` to fill."""
    return huge(torch.empty(lay.intra_shape)), huge(torch.empty(values.numel()))


def _grads_into(lay: Layout, intra: Tensor, values: Tensor, gys: Tensor, xs: Tensor, dst: Tensor | None,
                gxs: Tensor | None, gi: Tensor | None, gv: Tensor | None, nt: int, scratch: str = "blocks") -> None:
    """The gradients asked for (an output None: not asked) from the sorted, transposed output
    gradient gys [out, Bp]: the input gradient gxs[dst[r]] = (Wᵀ gys)[r] for every sorted input row r
    (dst None: row r itself), and the weight gradients gi, gv (both or neither;
    ``_weight_grads_into``). With both, element-wise layouts take the inter part's two products in
    one pass over its transposed pattern (``g2g_csr_grads``: each row of the output gradient is read
    once for both); otherwise they run one after the other. The blocks' part of the input gradient
    goes through the workspace ``scratch`` (the stack names one that is free at that point)."""
    if gi is not None and (gxs is None or lay.tile or not lay.n_values):
        _weight_grads_into(lay, gys, xs, gi, gv, nt)
        gi = None
    if gxs is None:
        return
    if gi is None:
        _product(lay, True, intra, values, gys, None, dst, gxs, scratch=scratch)
        return
    _block_grads_into(lay, gys, xs, gi, gv)
    ys = _block_product(lay, _seen_blocks(lay, intra, True), gys, scratch)
    rows, offs, vals = _transposed(lay, values, nt)
    native.csr_grads(lay.n_in, gys.shape[1], lay.t_rowptr, rows, offs, lay.index_bytes, lay.rowptr, vals, gys,
                     gys.stride(0), xs, xs.stride(0), ys, 0 if ys is None else ys.stride(0), dst, gxs, gxs.stride(0),
                     gv, nt)


def _weight_grads_into(lay: Layout, gys: Tensor, xs: Tensor, gi: Tensor, gv: Tensor, nt: int) -> None:
    """gi, gv = the gradients of intra and values from the sorted, transposed output gradient gys
    [out, Bp] and input xs [in, Bp] (pad columns of gys zero)."""
    bp = gys.shape[1]
    _block_grads_into(lay, gys, xs, gi, gv)
    if lay.n_values and lay.tile:  # 4x4 register blocks over whole tiles
        native.bsr_sddmm(lay.n_out // lay.tile, bp, lay.tile, lay.rowptr, lay.cols, gys, gys.stride(0), xs,
                         xs.stride(0), gv, nt)
    elif lay.n_values:
        native.csr_sddmm(lay.n_out, bp, lay.rowptr, lay.cols, lay.index_bytes, gys, gys.stride(0), xs,
                         xs.stride(0), gv, nt)


def _block_grads_into(lay: Layout, gys: Tensor, xs: Tensor, gi: Tensor, gv: Tensor) -> None:
    """The weight gradients but the inter part's: gi = the diagonal blocks' (0 where the block mask
    is off), and 0 for gv's reserved tail (DST)."""
    gv[lay.n_values:] = 0
    if lay.n_groups:
        torch.bmm(_blocks(lay, gys, lay.og), _blocks(lay, xs, lay.ig).transpose(1, 2), out=gi)
        if lay.block_mask is not None:
            gi.mul_(lay.block_mask)
    else:
        gi.zero_()


@linear_bwd.register_fake
def _(gy, xs, intra, values, layout, meta, need_x, need_w):
    n_in = int(meta[1])
    n = gy.shape[0]
    gx = gy.new_empty((n, n_in)) if need_x else gy.new_empty(0)
    gi = intra.new_empty(intra.shape) if need_w else gy.new_empty(0)
    gv = values.new_empty(values.shape) if need_w else gy.new_empty(0)
    return gx, gi, gv


def _setup_context(ctx, inputs, output) -> None:
    x, intra, values, bias, layout, meta = inputs
    _, xs = output
    ctx.mark_non_differentiable(xs)
    ctx.set_materialize_grads(False)  # no zero-filled gradient for xs
    ctx.save_for_backward(xs, intra, values, *layout)
    ctx.meta = list(meta)
    ctx.has_bias = bias is not None


def _grads(ctx, gy: Tensor, backward) -> tuple[Tensor | None, ...]:
    """The gradients of (x, intra, values, bias) that a linear node's inputs need, the first three
    by ``backward(need_x, need_w)`` (``linear_bwd`` or ``_backward_impl``)."""
    need_x, need_i, need_v, need_b = ctx.needs_input_grad[:4]
    gx, gi, gv = backward(need_x, need_i or need_v)
    gb = gy.sum(0) if need_b and ctx.has_bias else None
    return gx if need_x else None, gi if need_i else None, gv if need_v else None, gb


def _backward(ctx, gy: Tensor, _gxs: Tensor):
    xs, intra, values, *layout = ctx.saved_tensors
    grads = _grads(ctx, gy, lambda need_x, need_w: linear_bwd(gy, xs, intra, values, layout, ctx.meta, need_x, need_w))
    return *grads, [None] * len(layout), None


linear_fwd.register_autograd(_backward, setup_context=_setup_context)

# Under CPU autocast (bf16) the op computes in float32: the kernels are float32 only, and a bf16
# bmm result fed to them was the crash of the first version.
torch.library.register_autocast("g2gnet::linear_fwd", "cpu", torch.float32)


class _EagerLinear(torch.autograd.Function):
    """``linear_fwd`` with its registered backward, without the op dispatcher: the same checks and
    kernels, called directly. In eager training the custom ops' Python layers (schema defaults,
    pytree flattening of the layout, the autograd wrapper, the redispatch of each op) cost a layer
    about 0.4 ms per forward + backward (kernels stubbed out: 0.96-1.09 ms a step through the custom
    ops, 0.59-0.73 ms here), 1.09x of a 1024-wide layer's step at batch 256
    (benchmarks/op_overhead.py). The custom ops stay for torch.compile, autocast and torch.func."""

    @staticmethod
    def forward(ctx, x: Tensor, intra: Tensor, values: Tensor, bias: Tensor | None, lay: Layout) -> Tensor:
        y, xs = _checked_forward(x, intra, values, bias, lay)
        ctx.save_for_backward(xs, intra, values)  # the parameters: autograd's in-place check
        ctx.lay, ctx.has_bias = lay, bias is not None
        return y

    @staticmethod
    def backward(ctx, gy: Tensor):
        refuse_create_graph()
        xs, intra, values = ctx.saved_tensors
        grads = _grads(ctx, gy, lambda need_x, need_w: _backward_impl(gy, xs, intra, values, ctx.lay, need_x, need_w))
        return *grads, None


def refuse_create_graph() -> None:
    """A native backward records no graph of its own: under ``create_graph=True`` its gradients would
    carry no (or a partial) second derivative, silently. (``once_differentiable`` refuses only when
    the incoming gradient requires grad, not when the result depends on saved weights, as an input
    gradient penalty's does.)"""
    if torch.is_grad_enabled():  # autograd runs a backward in grad mode iff create_graph=True
        raise G2GError("g2gnet: no second derivative through the native kernels (backward with "
                       "create_graph=True); run it under g2gnet.kernels.reference_mode() or with layer.fast = False")


def direct_ok() -> bool:
    """Whether the kernels may be called directly with these tensors' memory: not while compiling or
    tracing (a graph records the op, not the ctypes calls) and not under a dispatch mode (fake
    tensors have no memory; make_fx and FlopCounterMode see only the ops)."""
    return not (torch.compiler.is_compiling() or torch.jit.is_tracing() or torch._C._len_torch_dispatch_stack())


def eager_ok() -> bool:
    """Whether ``linear_eager`` may run: ``direct_ok()``, and not under autocast (the custom op's
    registration computes in float32) or torch.func transforms (they need the op's rules)."""
    return direct_ok() and not (torch.is_autocast_enabled("cpu") or torch._C._are_functorch_transforms_active())


def linear_eager(x: Tensor, intra: Tensor, values: Tensor, bias: Tensor | None, lay: Layout) -> Tensor:
    """``linear`` in eager mode with autograd (``_EagerLinear``), where ``eager_ok()``."""
    x2, lead = as_rows(x)
    return from_rows(_EagerLinear.apply(x2, intra, values, bias, lay), lead)


def as_rows(x: Tensor) -> tuple[Tensor, torch.Size]:
    """x [..., in] as the 2-D [rows, in] the kernels take, and its leading dims (``from_rows``)."""
    return (x if x.dim() == 2 else x.reshape(-1, x.shape[-1])), x.shape[:-1]


def from_rows(y: Tensor, lead: torch.Size) -> Tensor:
    """The kernels' [rows, out] result with the input's leading dims restored: [..., out]."""
    return y if len(lead) == 1 else y.reshape(*lead, y.shape[-1])  # (lead () : one unbatched sample)


def float32(x: Tensor) -> Tensor:
    """x in float32, the kernels' dtype: another dtype reaches an eager path only under CPU autocast
    (the dispatcher's rule), where the custom ops' autocast registration computes in float32 too."""
    return x if x.dtype is torch.float32 else x.float()


def linear(x: Tensor, intra: Tensor, values: Tensor, bias: Tensor | None, layout: Sequence[Tensor],
           meta: Sequence[int]) -> Tensor:
    """The G2G layer on the native path for any leading dims of x ([..., in] -> [..., out])."""
    x2, lead = as_rows(x)
    y, _ = linear_fwd(x2, intra, values, bias, layout, meta)
    return from_rows(y, lead)


def linear_nograd(x: Tensor, intra: Tensor, values: Tensor, bias: Tensor | None, lay: Layout) -> Tensor:
    """``linear`` without autograd, in eager mode (inference at more than ``INFER_MAX_BATCH`` rows):
    the same kernels without the op dispatcher, and the sorted input in a workspace instead of a
    fresh tensor per call (nothing saves it): 1.03-1.06x at 1024-2048 wide, batch 64-256 (A/B, each
    call after a dense one)."""
    x2, lead = as_rows(x)
    x2 = float32(x2)
    _check_args(x2, intra, values, bias, lay)
    _require_native()
    y, _ = _forward(x2, intra, values, bias, lay, keep_xs=False)
    return from_rows(y, lead)

