"""The packed layout and the native path (custom ops) equal the masked reference in values and
gradients; the ops check their arguments, pass opcheck, compile and run under autocast."""

from __future__ import annotations

import inspect
import platform
import shutil
import subprocess
import sys

import pytest
import torch

from g2gnet.errors import G2GError
from g2gnet.kernels import dispatch, native, ops, reference_mode
from g2gnet.kernels.layout import build_layout, pack_bits, unpack_bits
from g2gnet.layers import SparseLinear
from g2gnet.topology import er_mask, group_ids, modular_mask

needs_native = pytest.mark.skipif(not native.available(), reason=f"native kernels unavailable: {native.error()}")


def _layer(n_in: int, n_out: int, out_scheme: str = "random", in_scheme: str = "random", *, p_inter=0.15,
           p_intra=1.0, tile=1, bias=True, seed=0, groups=8, with_ids=True) -> SparseLinear:
    g = torch.Generator().manual_seed(seed)
    og = group_ids(n_out, groups, out_scheme, g)
    ig = group_ids(n_in, groups, in_scheme, g)
    mask = modular_mask(og, ig, p_intra, p_inter, g, inter_tile=tile)
    ids = {"in_groups": ig, "out_groups": og} if with_ids else {}
    layer = SparseLinear(n_in, n_out, mask, bias=bias, generator=g, **ids)
    layer.fast = True  # test the native path even where the automatic choice would not take it
    return layer


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def _run(layer: SparseLinear, x: torch.Tensor, gy: torch.Tensor, reference: bool):
    x = x.detach().clone().requires_grad_(True)
    layer.zero_grad(set_to_none=True)
    with reference_mode() if reference else torch.enable_grad():
        y = layer(x)
    y.backward(gy)
    b = None if layer.bias is None else layer.bias.grad.clone()
    return y.detach(), x.grad.clone(), layer.packed.dense(layer.intra.grad, layer.values.grad), b


@needs_native
def _check(layer: SparseLinear, shape: tuple[int, ...], seed: int = 1) -> None:
    assert layer.execution_path(torch.zeros(shape)) == "native"
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g)
    gy = torch.randn(*shape[:-1], layer.out_features, generator=g)
    fast = _run(layer, x, gy, reference=False)
    ref = _run(layer, x, gy, reference=True)
    for name, a, b in zip(("output", "input grad", "weight grad", "bias grad"), fast, ref):
        if b is None:
            assert a is None
            continue
        assert a.shape == b.shape, name
        assert _rel(a, b) < 1e-5, f"{name}: rel err {_rel(a, b):.2e}"
    assert not fast[2][~layer.mask].any(), "the weight gradient must be exactly 0 off the mask"


@pytest.mark.parametrize("schemes", [("contiguous", "contiguous"), ("interleaved", "interleaved"),
                                     ("random", "random"), ("contiguous", "interleaved"),
                                     ("random", "contiguous")])
def test_schemes_match_reference(schemes):
    _check(_layer(128, 96, *schemes), (33, 128))


@pytest.mark.parametrize("batch", [1, 7, 20, 33, 130])
def test_odd_batches(batch):
    _check(_layer(64, 64), (batch, 64))


@needs_native
def test_batch_padding_follows_the_builds_vector_width():
    """Every kernel takes the batch columns in multiples of its build's vector width: the padding
    asks the library, and pads no more than one vector."""
    w = native.vector_width()
    assert w in (4, 8, 16)
    for n in (1, 7, 8, 9, 16, 17, 24, 25, 256, 257):
        bp = ops.padded(n)
        assert bp % w == 0 and n <= bp < n + w


def test_kernel_wrappers_match_the_c_prototypes():
    """One typed Python function per exported kernel, its arguments named as in the C source (those
    taking a struct or an out-pointer aside)."""
    protos = native.prototypes()
    assert set(native.KERNELS) == set(protos)
    for name, fn in native.KERNELS.items():
        if name in ("g2g_infer_call", "g2g_infer_chain", "g2g_vector_width"):
            continue
        assert set(inspect.signature(fn).parameters) == {arg for _, arg in protos[name]}, name


def test_3d_input_and_no_bias():
    _check(_layer(64, 80, bias=False), (3, 5, 64))


@needs_native
@pytest.mark.parametrize("batch,n", [(256, 1024), (33, 100), (8, 8), (7, 64), (256, 13), (1, 9), (17, 40), (600, 44)])
def test_transposed_gather_and_untranspose(batch, n):
    """The kernels' layout changes, exactly: x [batch, n] -> x[:, perm]ᵀ with zero padding columns
    (8 x 8 register transposes where both sides have 8, element copies for the tails), and back."""
    g = torch.Generator().manual_seed(batch * 1000 + n)
    x = torch.randn(batch, n, generator=g)
    bp = ops.padded(batch)
    for perm in (None, torch.randperm(n, generator=g)):
        xs = ops.gather_t(x, perm, bp)  # [n, Bp]: the batch padded to the kernels' vector width
        assert torch.equal(xs[:, :batch], (x if perm is None else x[:, perm]).T)
        full = xs.as_strided((n, ops.row_stride(bp)), (xs.stride(0), 1))
        assert not full[:, batch:].any(), "padding columns must be zero"
        assert torch.equal(ops.gather_t(x.T.contiguous().T, perm, bp)[:, :batch], xs[:, :batch])  # a transposed view
    t = torch.randn(n, ops.row_stride(bp), generator=g)[:, :bp]
    assert torch.equal(ops._untransposed(t, batch), t[:, :batch].T)


@needs_native
@pytest.mark.parametrize("batch,n", [(256, 64), (13, 20), (3, 5), (600, 44)])
def test_gathers_apply_the_relu_backward(batch, n):
    """A gradient gathered with its ReLU's output equals threshold_backward (zero where the output is
    <= 0, -0.0 included; the gradient where it is NaN) and then the plain gather, in each of the
    three copy loops (8 x 8 transposes and their tails, strided element copies, row copies)."""
    g = torch.Generator().manual_seed(batch + n)
    gy = torch.randn(batch, n, generator=g)
    y = torch.relu(torch.randn(batch, n, generator=g))
    y[0, :3] = torch.tensor([-0.0, float("nan"), 1e-30])
    ref = torch.ops.aten.threshold_backward(gy, y, 0)
    bp = ops.padded(batch)
    for perm in (None, torch.randperm(n, generator=g)):
        want = ops.gather_t(ref, perm, bp)
        assert torch.equal(ops.gather_t(gy, perm, bp, relu_out=y), want)
        # a transposed view: the strided element copies
        assert torch.equal(ops.gather_t(gy.T.contiguous().T, perm, bp, relu_out=y.T.contiguous().T), want)
        # rows of the kernels' layout (the stack's hand-off between layers): row copies
        gt, yt, out = ops.gather_t(gy, None, bp), ops.gather_t(y, None, bp), torch.full((n, bp), 7.0)
        native.gather_t(gt, bp, 1, gt.stride(0), perm, n, out, out.stride(0), 2, relu_out=yt)
        assert torch.equal(out[:, :batch], want[:, :batch])
    with pytest.raises(G2GError, match="ReLU output"):
        ops.gather_t(gy, None, bp, relu_out=y.T.contiguous().T)
    # one row: its stride is never used, so it may differ
    y1 = y[:1].clone().as_strided((1, n), (n + 7, 1))
    assert torch.equal(ops.gather_t(gy[:1], None, ops.padded(1), relu_out=y1),
                       ops.gather_t(torch.ops.aten.threshold_backward(gy[:1], y[:1], 0), None, ops.padded(1)))


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or shutil.which("g++") is None,
                    reason="x86-64 targets and g++ needed")
@pytest.mark.parametrize("arch", ["x86-64", "haswell", "skylake-avx512"])
def test_kernels_compile_for_every_vector_width(arch):
    """The kernel source builds for 4-, 8- and 16-float vectors (SSE2, AVX2, AVX-512) whatever this
    machine has: its code paths differ by width, and a machine of another kind builds its own
    (an AVX-512 build once failed on a cast of an 8-float vector)."""
    proc = subprocess.run(["g++", "-fsyntax-only", f"-march={arch}", "-fopenmp", "-std=c++17", str(native.SOURCE)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


@needs_native
@pytest.mark.parametrize("threads", [1, 3, 16])
def test_tiles_at_every_thread_count(threads):
    """The tile products split their tile rows over the threads by tiles: any thread count,
    including more threads than tile rows (8 here), gives the reference's values and gradients."""
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _check(_layer(64, 64, tile=8, p_inter=0.3), (19, 64))
    finally:
        torch.set_num_threads(prev)


@needs_native
@pytest.mark.parametrize("shape", [(200, 1024), (36, 64), (4, 16)])
def test_csr_transpose_at_every_thread_count(shape):
    """The input gradient's transposed pattern (column ranges built in parallel, blocks of columns
    at a time) is the CSC of the packed inter part, rows ascending in every column, whatever the
    thread count (uneven shares, more threads than columns), with the values, each entry's place in
    its CSR row, or both (three arrays: half the columns a pass)."""
    n_out, n_in = shape
    lay = _layer(n_in, n_out, groups=4).packed.layout
    values = torch.randn(lay.n_values)
    rows = torch.repeat_interleave(torch.arange(n_out), lay.rowptr.diff())
    order = torch.argsort(lay.cols.long() * n_out + rows)  # by column, then row
    in_row = torch.arange(lay.n_values) - lay.rowptr[rows]
    for nt in (1, 2, 3, 5, 16, 40):
        for with_vals, with_offs in ((True, False), (False, True), (True, True)):
            t_rows = torch.empty_like(lay.cols)
            t_vals = torch.full((lay.n_values,), float("nan")) if with_vals else None
            t_offs = torch.full_like(lay.cols, -1) if with_offs else None
            native.csr_transpose(n_out, n_in, lay.rowptr, lay.cols, lay.index_bytes, values, lay.t_rowptr, t_rows,
                                 t_vals, t_offs, nt)
            assert torch.equal(t_rows.long(), rows[order]), nt
            assert t_vals is None or torch.equal(t_vals, values[order]), nt
            assert t_offs is None or torch.equal(t_offs.long(), in_row[order]), nt


@needs_native
@pytest.mark.parametrize("batch", [1, 17, 64, 88, 256])
@pytest.mark.parametrize("index_bytes", [2, 4])
def test_both_gradients_in_one_pass_equal_dense_products(batch, index_bytes):
    """``g2g_csr_grads`` (the input gradient and the inter part's weight gradient in one pass over the
    transposed pattern) against dense products: batch chunks of 8 vectors and their remainders,
    columns without entries, a row order (dst) and a start value (init), 1-5 threads; the transposed
    values from the transposition and from the gather of a kept pattern (values past the entries' end:
    a DST reserve, never read)."""
    g = torch.Generator().manual_seed(batch * 10 + index_bytes)
    n_out, n_in, bp = 40, 50, ops.padded(batch)
    mask = torch.rand(n_out, n_in, generator=g) < 0.3
    mask[:, :3] = False  # input rows of the transposed pattern without entries
    w = torch.randn(n_out, n_in, generator=g) * mask
    rowptr = torch.cat([torch.zeros(1, dtype=torch.int64), mask.sum(1).cumsum(0)])
    itype = torch.int16 if index_bytes == 2 else torch.int32
    cols = mask.nonzero()[:, 1].to(itype)
    values = torch.cat([w[mask], torch.full((5,), float("nan"))])  # a reserve the kernel must not read
    colptr = torch.cat([torch.zeros(1, dtype=torch.int64), mask.sum(0).cumsum(0)])
    a, x = torch.zeros(n_out, bp + 8), torch.zeros(n_in, bp + 4)  # row strides beyond bp
    a[:, :batch], x[:, :batch] = torch.randn(n_out, batch, generator=g), torch.randn(n_in, batch, generator=g)
    init, dst = torch.randn(n_in, bp, generator=g), torch.randperm(n_in, generator=g)
    want_gx, want_gv = torch.empty(n_in, bp), (a[:, :bp] @ x[:, :bp].T)[mask]
    want_gx[dst] = init + w.T @ a[:, :bp]
    n = mask.sum().item()
    for nt in (1, 2, 5):
        t_rows, t_offs, t_vals = torch.empty(n, dtype=itype), torch.empty(n, dtype=itype), torch.empty(n)
        native.csr_transpose(n_out, n_in, rowptr, cols, index_bytes, values, colptr, t_rows, t_vals, t_offs, nt)
        gathered = torch.full((n,), float("nan"))
        native.csr_gather(n, t_rows, t_offs, index_bytes, rowptr, values, gathered, nt)
        assert torch.equal(gathered, t_vals)
        gx, gv = torch.full((n_in, bp + 2), float("nan")), torch.full((n,), float("nan"))
        native.csr_grads(n_in, bp, colptr, t_rows, t_offs, index_bytes, rowptr, t_vals, a, a.stride(0), x,
                         x.stride(0), init, init.stride(0), dst, gx, gx.stride(0), gv, nt)
        torch.testing.assert_close(gx[:, :bp], want_gx, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(gv, want_gv, rtol=1e-5, atol=1e-5)
        gx.fill_(float("nan"))
        native.csr_grads(n_in, bp, colptr, t_rows, t_offs, index_bytes, rowptr, gathered, a, a.stride(0), x,
                         x.stride(0), None, 0, None, gx, gx.stride(0), gv, nt)
        torch.testing.assert_close(gx[:, :bp], w.T @ a[:, :bp], rtol=1e-5, atol=1e-5)


def test_one_unbatched_sample():
    """A 1-D input is one sample, as for nn.Linear: [in] -> [out] on every path (the training path
    once failed on it: the leading dims () were restored with unflatten)."""
    layer = _layer(64, 48)
    _check(layer, (64,))
    x = torch.randn(64)
    with torch.no_grad():
        with reference_mode():
            ref = layer(x)
        assert layer.execution_path(x) == "infer"
        y = layer(x)
    assert y.shape == (48,)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("p_inter", [0.0, 1.0])
def test_extreme_inter_probabilities(p_inter):
    _check(_layer(64, 64, p_inter=p_inter), (17, 64))


def test_partial_intra_blocks():
    layer = _layer(64, 64, "interleaved", "random", p_intra=0.7)
    assert layer.layout.block_mask is not None
    _check(layer, (9, 64))


@pytest.mark.parametrize("tile, p_intra", [(4, 1.0), (8, 1.0), (16, 1.0), (8, 0.7)])
def test_tiled_masks(tile, p_intra):
    # Tiled layouts run the diagonal blocks inside the BSR kernel's pass: rectangular groups (og 16,
    # ig 32) and a partial block mask check its strides both ways (forward and input gradient).
    layer = _layer(256, 128, "random", "interleaved", tile=tile, p_intra=p_intra)
    assert layer.layout.tile >= tile and (layer.layout.block_mask is not None) == (p_intra < 1)
    _check(layer, (21, 256))


@needs_native
@pytest.mark.parametrize("transposed", [False, True])
def test_blocks_inside_the_bsr_pass_equal_the_dense_product(transposed):
    # The BSR kernel computes the diagonal blocks in its own pass from a strided view ([G, og, ig], or
    # transposed [G, ig, og] for the input gradient: the layer uses the forward, benchmarks both).
    layer = _layer(256, 128, "random", "interleaved", tile=8, p_intra=0.7)
    lay = layer.layout
    n = 21
    bp = ops.padded(n)
    w = (layer.weight * layer.mask).detach()  # [out, in], original order
    src = torch.randn(n, lay.n_out if transposed else lay.n_in)
    perm, dst = (lay.out_perm, lay.in_perm) if transposed else (lay.in_perm, lay.out_perm)
    xs = ops.gather_t(src, perm, bp)
    out = torch.full((w.shape[1] if transposed else w.shape[0], ops.row_stride(bp)), float("nan"))[:, :bp]
    blocks = ops._masked(layer.intra.detach(), lay)
    ops._sparse_rows(lay, transposed, layer.values.detach(), xs, None, None, dst, out,
                     blocks=blocks.transpose(1, 2) if transposed else blocks)
    expected = src @ w if transposed else src @ w.T
    torch.testing.assert_close(out[:, :n].T, expected, rtol=1e-5, atol=1e-5)
    assert bool((out[:, n:] == 0).all())  # pad columns: zero in, zero out


def test_element_wise_mask_is_not_tiled():
    assert _layer(128, 128).layout.tile == 0


def test_layout_round_trip_and_bits():
    layer = _layer(96, 64, p_intra=0.8)
    dense = torch.randn(64, 96) * layer.mask
    assert torch.equal(layer.packed.dense(*layer.packed.from_dense(dense)), dense)
    mask = torch.rand(5, 13) < 0.4
    assert torch.equal(unpack_bits(pack_bits(mask), 13), mask) and pack_bits(mask).shape == (5, 2)


def test_parameters_hold_only_active_connections():
    layer = _layer(256, 256)
    lay = layer.layout
    assert lay.n_groups == 8 and layer.intra.shape == (8, 32, 32) and lay.block_mask is None
    assert layer.intra.numel() + layer.values.numel() == layer.nnz  # full blocks: nothing padded
    assert not [n for n, _ in layer.named_parameters() if n not in ("packed.intra", "packed.values", "bias")]


@pytest.mark.parametrize("with_ids", [True, False])
def test_set_mask_rebuilds_layout(with_ids):
    layer = _layer(64, 64, with_ids=with_ids)
    g = torch.Generator().manual_seed(5)
    new = modular_mask(group_ids(64, 8, "contiguous"), group_ids(64, 8, "contiguous"), 1.0, 0.4, g)
    before = layer.weight.detach().clone()
    layer.set_mask_(new)
    assert torch.equal(layer.mask, new) and layer.nnz == int(new.sum())
    assert torch.equal(layer.weight.detach(), before * new)  # kept values stay, new ones start at 0
    with torch.no_grad():  # new connections get values, as training would give them
        layer.values.add_(0.01)
        layer.intra.add_(0.01)
    _check(layer, (12, 64))


@needs_native
def test_kept_transposed_pattern_follows_values_and_mask():
    """An element-wise layer's backward keeps its transposed pattern in the layout (built once per
    mask) and gathers the current values through it: gradients stay the reference's after the values
    change and after a DST-like mask change with a reserve (a new layout, built afresh)."""
    layer = _layer(96, 80, p_inter=0.3)
    layer.packed.reserve_(layer.values.numel() + 40)
    assert layer.layout.transposed is None
    _check(layer, (21, 96))
    kept = layer.layout.transposed
    assert kept is not None
    with torch.no_grad():
        layer.values.mul_(-2.0).add_(0.1)
    _check(layer, (21, 96), seed=2)
    assert layer.layout.transposed is kept  # reused, not rebuilt
    g = torch.Generator().manual_seed(4)
    layer.set_mask_(layer.mask ^ (torch.rand(80, 96, generator=g) < 0.05))
    assert layer.layout.transposed is None
    with torch.no_grad():
        layer.values.add_(0.01)
        layer.intra.add_(0.01)
    _check(layer, (21, 96), seed=3)
    assert layer.layout.transposed is not None and layer.layout.transposed is not kept


def test_state_dict_into_a_fresh_layer_with_another_mask():
    a = _layer(64, 64, seed=1)
    g = torch.Generator().manual_seed(9)
    a.set_mask_(a.mask ^ (torch.rand(64, 64, generator=g) < 0.05))  # as DST leaves it
    with torch.no_grad():
        a.values.normal_()
    b = _layer(64, 64, seed=1)
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.mask, a.mask) and torch.equal(b.weight, a.weight)
    x = torch.randn(7, 64)
    torch.testing.assert_close(b(x), a(x))
    state = a.state_dict()
    assert set(state) == {f"packed.{k}" for k in ("mask_bits", "weight_values", "in_groups", "out_groups",
                                                  "blocks", "in_features")} | {"bias"}
    assert state["packed.weight_values"].numel() == a.nnz and bool(state["packed.blocks"])


def test_state_dict_of_the_first_version_loads():
    a = _layer(64, 48)
    old = {"weight": a.weight.detach().clone(), "mask": a.mask, "bias": a.bias.detach().clone(),
           "in_groups": a.in_groups, "out_groups": a.out_groups}
    b = _layer(64, 48, seed=4)
    b.load_state_dict(old)
    assert torch.equal(b.weight, a.weight) and torch.equal(b.mask, a.mask)


def test_fallback_when_compilation_fails(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("G2G_CACHE", str(tmp_path))
    native._reset_for_tests()
    try:
        with pytest.warns(RuntimeWarning, match="native CPU kernels unavailable"):
            assert native.get() is None
        assert native.error()
        layer = _layer(64, 64)
        x = torch.randn(5, 64)
        assert layer.execution_path(x) == "reference"
        with reference_mode():
            ref = layer(x)
        assert torch.equal(layer(x), ref)
    finally:
        native._reset_for_tests()


def test_reference_switches():
    layer = _layer(64, 64)
    x = torch.zeros(4, 64)
    assert (dispatch.choose(layer, x) is not None) == native.available()
    layer.fast = False
    assert dispatch.choose(layer, x) is None
    layer.fast = True
    with reference_mode():
        assert dispatch.choose(layer, x) is None


@needs_native
@pytest.mark.parametrize("shape", [(96, 64), (98, 40)])
def test_masks_without_groups(shape):
    g = torch.Generator().manual_seed(3)
    layer = SparseLinear(shape[0], shape[1], er_mask(shape[1], shape[0], 0.25625, g), generator=g)
    layer.fast = True
    assert layer.layout.n_groups == 0  # an ER mask has no ensembles: everything is in values
    _check(layer, (13, shape[0]))


@needs_native
def test_ensembles_found_from_the_mask_alone():
    with_ids, alone = _layer(512, 256), _layer(512, 256, with_ids=False)
    assert torch.equal(with_ids.mask, alone.mask)
    assert alone.layout.n_groups == 8 and alone.layout.n_values == with_ids.layout.n_values
    _check(alone, (40, 512))


@needs_native
def test_automatic_choice():
    plain = SparseLinear(64, 64)  # too small to gain: reference
    assert dispatch.choose(plain, torch.zeros(256, 64)) is None
    er = SparseLinear(1024, 1024, er_mask(1024, 1024, 0.25625, torch.Generator().manual_seed(0)))
    assert dispatch.choose(er, torch.zeros(256, 1024)) is not None  # sparse enough without groups
    assert dispatch.choose(SparseLinear(1024, 1024), torch.zeros(256, 1024)) is None  # dense mask
    layer = _layer(1024, 1024)
    layer.fast = None
    assert dispatch.choose(layer, torch.zeros(256, 1024)) is not None
    assert dispatch.choose(layer, torch.zeros(1, 1024)) == "native"  # training at batch 1: still pays (crossover.md)
    with torch.no_grad():
        assert dispatch.choose(layer, torch.zeros(1, 1024)) == "infer"
        assert dispatch.choose(layer, torch.zeros(17, 1024)) == "native"
    assert dispatch.choose(layer.double(), torch.zeros(256, 1024, dtype=torch.float64)) is None


@needs_native
def test_the_crossover_follows_the_builds_vector_width(monkeypatch):
    # crossover.md of an AVX2 and of an AVX-512 machine: the batched kernels pay from smaller
    # layers with 16-float vectors (training from 256 x 256, inference from 128 x 128) than with 8
    # (512 x 512 and 256 x 256); a width not measured takes the larger numbers.
    mid, small, tiny = _layer(256, 256), _layer(128, 128), _layer(64, 64)
    mid.fast = small.fast = tiny.fast = None
    expect = {8: (None, None, None), 16: ("native", None, "native"), 4: (None, None, None)}
    for width, (train_mid, train_small, infer_small) in expect.items():
        monkeypatch.setattr(native, "_width", width)
        assert dispatch.choose(mid, torch.zeros(256, 256)) == train_mid
        assert dispatch.choose(small, torch.zeros(256, 128)) == train_small
        with torch.no_grad():
            assert dispatch.choose(small, torch.zeros(64, 128)) == infer_small
            assert dispatch.choose(mid, torch.zeros(64, 256)) == "native"
            assert dispatch.choose(tiny, torch.zeros(64, 64)) is None


def test_float64_and_bfloat16_layers_use_the_reference():
    layer = _layer(64, 64).double()
    x = torch.randn(6, 64, dtype=torch.float64)
    assert layer.execution_path(x) == "reference"
    y = layer(x)
    assert y.dtype == torch.float64
    bf = _layer(64, 64).bfloat16()
    assert bf(torch.randn(3, 64, dtype=torch.bfloat16)).dtype == torch.bfloat16


@needs_native
def test_training_step_keeps_inactive_weights_zero():
    layer = _layer(128, 128, p_intra=0.8)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2, weight_decay=1e-2)
    for _ in range(3):
        opt.zero_grad()
        layer(torch.randn(16, 128)).relu().sum().backward()
        opt.step()
    assert not layer.weight[~layer.mask].any()


# -- the custom ops ---------------------------------------------------------------------------
def _op_args(layer: SparseLinear, n: int = 10):
    x = torch.randn(n, layer.in_features, requires_grad=True)
    return (x, layer.intra, layer.values, layer.bias, *layer.packed.op_args())


@needs_native
@pytest.mark.parametrize("tile", [1, 8])
def test_opcheck(tile):
    layer = _layer(64, 64, tile=tile, p_intra=0.9)
    torch.library.opcheck(ops.linear_fwd, _op_args(layer))


@needs_native
@pytest.mark.parametrize("mutate, pattern", [
    (lambda a: (a[0].double(), *a[1:]), "x has dtype torch.float64"),
    (lambda a: (a[0][:, :10], *a[1:]), r"x must be \[N, 64\]"),
    (lambda a: (a[0], a[1].transpose(1, 2), *a[2:]), "intra has shape"),
    (lambda a: (a[0], a[1], a[2][:5], *a[3:]), "values must be 1-D with at least"),
    (lambda a: (a[0], a[1], a[2], a[3][:3], *a[4:]), "bias has shape"),
    (lambda a: (*a[:4], [t.long() if i == 4 else t for i, t in enumerate(a[4])], a[5]), "layout.cols has dtype"),
    (lambda a: (*a[:4], a[4][:3], a[5]), "layout needs 8 tensors"),
])
def test_op_boundary_checks(mutate, pattern):
    args = mutate(_op_args(_layer(64, 32)))
    with pytest.raises(G2GError, match=pattern):
        ops.linear_fwd(*args)


def _native_model(name: str, width: int):
    from g2gnet import build_model

    model = build_model(name, width, 10, hidden=[width, width], seed=0)
    for m in model.modules():
        if isinstance(m, SparseLinear):
            m.fast = True  # the native path even where the automatic choice would not take it
    return model


@needs_native
def test_autocast_bfloat16_computes_in_float32():
    model = _native_model("g2g-mixer", 256)
    x = torch.randn(64, 256)
    ref = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    out.float().square().sum().backward()
    assert torch.isfinite(out.float()).all() and _rel(out.float(), ref) < 0.05
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


@needs_native
def test_compile_fullgraph_matches_eager():
    model = _native_model("g2g-random", 128)
    x = torch.randn(32, 128)
    ref = model(x)
    ref.square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    out = torch.compile(model, fullgraph=True)(x)
    out.square().sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    for a, p in zip(grads, model.parameters()):
        torch.testing.assert_close(p.grad, a, rtol=1e-4, atol=1e-5)


@needs_native
@pytest.mark.parametrize("tile, bias, x_grad, frozen", [(1, True, True, False), (8, False, True, False),
                                                         (1, True, False, False), (1, True, True, True)])
def test_eager_training_equals_the_custom_ops_bit_for_bit(tile, bias, x_grad, frozen, monkeypatch):
    """The eager Function's training equals the custom ops' bit for bit (output and every gradient),
    also with frozen weights (the input gradient alone: the kept transposed pattern in eager mode,
    a pattern built per call, without places, through the custom ops)."""
    layer = _layer(64, 128, tile=tile, bias=bias)
    layer.packed.requires_grad_(not frozen)
    g = torch.Generator().manual_seed(3)
    x, gy = torch.randn(2, 9, 64, generator=g), torch.randn(2, 9, 128, generator=g)
    calls = []
    monkeypatch.setattr(ops._EagerLinear, "apply", _spy(ops._EagerLinear.apply, calls))

    def run(eager: bool):
        monkeypatch.setattr(ops, "eager_ok", lambda: eager)
        xr = x.clone().requires_grad_(x_grad)
        layer.zero_grad(set_to_none=True)
        y = layer(xr)
        y.backward(gy)
        return [y, xr.grad, layer.intra.grad, layer.values.grad, None if layer.bias is None else layer.bias.grad]

    custom = run(False)
    assert not calls, "the custom ops' run went through the eager Function"
    eager = run(True)
    assert len(calls) == 1, "eager training did not take the eager Function"
    for a, b in zip(eager, custom):
        assert (a is None and b is None) or torch.equal(a, b)
    assert (eager[1] is None) == (not x_grad)


def _spy(f, calls: list):
    def spied(*args):
        calls.append(1)
        return f(*args)
    return spied


@needs_native
def test_eager_training_is_what_runs_outside_compile_autocast_tracing_and_torch_func(monkeypatch):
    assert ops.eager_ok()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not ops.eager_ok()  # the custom op's autocast registration computes in float32
    seen = []
    torch.func.grad(lambda t: seen.append(ops.eager_ok()) or t.sum())(torch.zeros(2))
    torch.jit.trace(lambda t: seen.append(ops.eager_ok()) or t * 2, torch.zeros(2), check_trace=False)
    assert seen == [False, False]  # torch.func and tracing need the op (a trace records no ctypes call)
    layer = _layer(64, 32)
    calls = []
    monkeypatch.setattr(ops._EagerLinear, "apply", _spy(ops._EagerLinear.apply, calls))
    layer(torch.randn(5, 64)).sum().backward()
    assert calls == [1]


@needs_native
def test_eager_training_detects_parameters_changed_before_backward():
    layer = _layer(64, 32)
    x = torch.randn(5, 64, requires_grad=True)
    y = layer(x)
    with torch.no_grad():
        layer.values.add_(1.0)  # the backward would use the new weights: autograd must refuse
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


@needs_native
def test_second_derivatives_through_the_kernels_are_refused_not_silently_wrong():
    # An input-gradient penalty: the loss is linear in y (its incoming gradient needs no grad), yet
    # the penalty's gradient depends on the weights; the reference path computes it.
    layer = _layer(64, 128, tile=8)
    model = _native_model("g2g-mixer", 64)
    for module, shape in ((layer, (9, 64)), (model, (20, 64))):
        x = torch.randn(*shape, requires_grad=True)
        with pytest.raises(G2GError, match="create_graph=True"):
            torch.autograd.grad(module(x).sum(), x, create_graph=True)
        with reference_mode():
            g, = torch.autograd.grad(module(x).sum(), x, create_graph=True)
            g.square().sum().backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


@needs_native
def test_parametrized_layers_take_the_reference_path():
    from torch.nn.utils import parametrize

    class Shift(torch.nn.Module):
        def forward(self, t):
            return t + 1.0

    model = _native_model("g2g-mixer", 64)
    for block in model.blocks:
        parametrize.register_parametrization(block.linear, "bias", Shift())
    parametrize.register_parametrization(model.blocks[1].linear.packed, "intra", Shift())
    for batch in (4, 40):
        x = torch.randn(batch, 64)
        for grad in (False, True):
            with torch.set_grad_enabled(grad):
                assert not model.stacked(x) and model.blocks[0].linear.execution_path(x) == "reference"
                with reference_mode():
                    ref = model(x)
                torch.testing.assert_close(model(x), ref)


@needs_native
def test_dispatch_modes_see_the_ops_not_the_kernels():
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.proxy_tensor import make_fx

    layer = _layer(64, 32)
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            graph = make_fx(lambda t: layer(t))(torch.randn(20, 64, requires_grad=grad))
            assert any("g2gnet" in str(n.target) for n in graph.graph.nodes), "the trace lost the op"
            with FakeTensorMode(allow_non_fake_inputs=True):  # fake tensors have no memory to read
                y = layer(torch.randn(20, 64, requires_grad=grad))
            assert tuple(y.shape) == (20, 32)
    with torch.no_grad():
        graph = make_fx(lambda t: layer(t))(torch.randn(3, 64))  # the serving kernel's op
    assert any("linear_infer" in str(n.target) for n in graph.graph.nodes)


@needs_native
def test_eager_calls_check_a_layout_version_once_and_the_ops_every_call(monkeypatch):
    layer = _layer(64, 32)
    checked = []
    real = ops._check
    monkeypatch.setattr(ops, "_check", lambda name, *a, **k: checked.append(name) or real(name, *a, **k))

    def layout_checks(f) -> int:
        checked.clear()
        f()
        return sum(name.startswith("layout.") for name in checked)

    x = torch.randn(20, 64)
    step = lambda: layer(x.requires_grad_()).sum().backward()  # noqa: E731
    assert layout_checks(step) > 0 and layout_checks(step) == 0
    with torch.no_grad():
        assert layout_checks(lambda: layer(x)) == 0  # eager inference: the same Layout object
        layer.packed.set_mask_(layer.mask.flip(0))  # a new layout version: checked again
        assert layout_checks(lambda: layer(x)) > 0
    args = _op_args(layer)
    assert layout_checks(lambda: ops.linear_fwd(*args)) > 0 and layout_checks(lambda: ops.linear_fwd(*args)) > 0


def test_build_layout_without_blocks():
    mask = torch.rand(16, 24) < 0.3
    lay = build_layout(mask, None, None, blocks=False)
    assert lay.n_groups == 0 and lay.n_values == int(mask.sum()) and lay.tile == 0


# -- every batch size: the inference paths ---------------------------------------------------------
@needs_native
@pytest.mark.parametrize("shape,tile,p_intra", [((256, 128), 1, 1.0), ((96, 64), 1, 0.8), ((128, 128), 8, 1.0),
                                                ((128, 128), 4, 1.0), ((256, 256), 32, 0.8), ((784, 64), 1, 1.0)])
def test_inference_paths_equal_the_reference_at_every_batch(shape, tile, p_intra):
    n_in, n_out = shape
    layer = _layer(n_in, n_out, p_intra=p_intra, tile=tile, groups=8 if n_in % 8 == 0 else 4)
    layer.eval()
    assert layer.packed.layout.tile == (tile if tile > 1 else 0)  # the tiled kernels are the ones tested
    for batch in (1, 2, 3, 7, 8, 13, 16, 17, 64):
        x = torch.randn(batch, n_in)
        with torch.inference_mode():
            with reference_mode():
                ref = layer(x)
            for fast in (True, None):
                layer.fast = fast
                torch.testing.assert_close(layer(x), ref, rtol=1e-5, atol=1e-5)
    layer.fast = None
    with torch.no_grad():  # inference picks an inference path
        assert layer.execution_path(torch.zeros(1, n_in)) == "infer"


@needs_native
def test_inference_with_32_bit_column_indices_equals_the_reference():
    """Layers wider than 32767 index their CSR entries with int32: the same kernels on a small layer
    whose indices are widened (batch 1 reads a row's last entries as a masked vector of 8)."""
    layer = _layer(200, 72, p_intra=0.8).eval()
    packed = layer.packed
    assert packed.cols.dtype == torch.int16
    packed.cols = packed.cols.to(torch.int32)
    packed._invalidate()
    assert packed.layout.index_bytes == 4
    for batch in (1, 2, 5, 8, 16, 64):
        x = torch.randn(batch, 200)
        with torch.inference_mode():
            with reference_mode():
                ref = layer(x)
            torch.testing.assert_close(layer(x), ref, rtol=1e-5, atol=1e-5)


@needs_native
def test_inference_reads_strided_rows_and_columns_between_contiguous_calls():
    """The eager plan keeps the batch size, row stride and threads it last set: rows of a wider
    tensor (row stride 2 x in), a transposed view (column stride != 1: copied) and contiguous inputs,
    in turn on one layer, each equal the reference."""
    layer = _layer(96, 64).eval()
    wide = torch.randn(5, 192)
    inputs = [wide[:, :96], torch.randn(5, 96), torch.randn(96, 5).T, wide[:, 96:], torch.randn(1, 96), wide[:1, :96]]
    with torch.inference_mode():
        for x in inputs:
            with reference_mode():
                ref = layer(x)
            assert layer.execution_path(x) == "infer"
            torch.testing.assert_close(layer(x), ref, rtol=1e-5, atol=1e-5)


@needs_native
def test_inference_rechecks_parameters_changed_after_a_call():
    """Eager inference checks a layer's parameters again whenever they are not the ones it last
    checked: a change in place is used, and a tensor swapped in with the wrong size is an error,
    never a read past its end."""
    layer = _layer(64, 64).eval()
    x = torch.randn(1, 64)
    with torch.inference_mode():
        layer(x)
        with torch.no_grad():
            layer.packed.values.mul_(2)
        with reference_mode():
            ref = layer(x)
        torch.testing.assert_close(layer(x), ref, rtol=1e-5, atol=1e-5)
        layer.packed.values.data = torch.randn(3)
        with pytest.raises(G2GError, match="values must be 1-D with at least"):
            layer(x)


def test_no_path_keeps_a_stale_weight_after_a_fused_optimizer_step():
    """A fused optimizer step changes the parameters without moving their version counters, so no
    path may cache anything derived from the weights (a cached dense weight once did)."""
    layer = _layer(64, 64)
    layer.fast = None
    x = torch.randn(20, 64)
    opt = torch.optim.Adam(layer.parameters(), lr=0.5, fused=True)
    for rows in (1, 20):
        with torch.no_grad():
            layer(x[:rows])
        v = layer.values._version
        layer(x).square().sum().backward()
        opt.step()
        assert layer.values._version == v  # the premise: nothing tells the layer
        with torch.no_grad():
            with reference_mode():
                ref = layer(x[:rows])
            torch.testing.assert_close(layer(x[:rows]), ref)


@needs_native
def test_P11_compile_in_a_fresh_process():
    """torch.compile(fullgraph=True) of a sparsified model as the first thing a process does: the
    dispatcher's question 'are the kernels built?' must not put a lock into the graph."""
    code = ("import torch, torch.nn as nn, g2gnet\n"
            "m = g2gnet.sparsify(nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),"
            " nn.Linear(512, 10)))\n"
            "x = torch.randn(256, 512)\n"
            "y = torch.compile(m, fullgraph=True)(x)\n"
            "assert torch.allclose(y, m(x), atol=1e-5), 'compiled != eager'\n"
            "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


@needs_native
def test_batched_inference_returns_fresh_tensors_for_any_leading_dims_and_autocast():
    """Inference above 16 rows runs the batched kernels without the op (``ops.linear_nograd``),
    its sorted input in a workspace: results must not alias it or each other, keep leading dims,
    and compute in float32 under bf16 autocast, like the op."""
    layer = _layer(128, 96)
    layer.fast = True
    x1, x2 = torch.randn(40, 128), torch.randn(2, 20, 128)
    with torch.no_grad():
        with reference_mode():
            ref1, ref2 = layer(x1), layer(x2)
        assert layer.execution_path(x1) == "native"
        y1 = layer(x1)
        y2 = layer(x2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y3 = layer(x1.bfloat16())
    torch.testing.assert_close(y1, ref1, rtol=1e-5, atol=1e-5)  # not overwritten by the second call
    torch.testing.assert_close(y2, ref2, rtol=1e-5, atol=1e-5)
    assert y2.shape == (2, 20, 96) and y3.dtype == torch.float32
    torch.testing.assert_close(y3, ref1, rtol=0.02, atol=0.02)
