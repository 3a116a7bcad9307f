"""Per-part costs of a G2G layer's native path, as fractions of one dense matmul of the same shape
(one process, medians of 20 repeats): python benchmarks/parts.py WIDTH [TILE]

Parts: the transposed gather of the input, one batched intra-block matmul, the inter-ensemble
product (forward), its transpose (input gradient, including the values in the order of the
transposed pattern that the layout keeps),
the sampled product (weight gradient), and for element-wise masks the same forward inter product
by PyTorch's sparse CSR matmul (``torch.sparse``, MKL on x86 builds) for comparison and the two
gradients' inter products in one pass as the layer runs them (``g2g_csr_grads``), or with tiles
the forward and input-gradient products as the layer runs them, blocks inside the BSR pass; then
the whole layer forward + backward against nn.Linear. benchmarks/step_stages.py times the stages of
one step in sequence instead.
"""

import statistics
import sys
import time

import torch

from g2gnet import malloc
from g2gnet.bench import sparse_layer
from g2gnet.kernels import native, ops

malloc.keep_defaults()  # dense as plain PyTorch runs it: no g2gnet allocator setting (g2gnet.malloc)

torch.set_num_threads(2)
N, B = int(sys.argv[1]), 256
tile = int(sys.argv[2]) if len(sys.argv) > 2 else 1
layer = sparse_layer(N, tile)
lay = layer.layout
x, gy, dense_w = torch.randn(B, N), torch.randn(B, N), torch.randn(N, N)
bp = ops.padded(B)


def median_ms(f, repeats: int = 20) -> float:
    for _ in range(3):
        f()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


mm = median_ms(lambda: x @ dense_w.T)
xs = ops.gather_t(x, lay.in_perm, bp)
gys = ops.gather_t(gy, lay.out_perm, bp)
out = torch.empty(N, ops.row_stride(bp))[:, :bp]
gv = torch.empty(layer.values.numel())
ib = lay.index_bytes
parts = {
    "gather (transpose)": lambda: ops.gather_t(x, lay.in_perm, bp),
    "intra bmm": lambda: torch.bmm(layer.intra, xs.unflatten(0, (8, N // 8))),
    "inter forward": lambda: ops._sparse_rows(lay, False, layer.values, xs, None, None, lay.out_perm, out),
    "inter input grad": lambda: ops._sparse_rows(lay, True, layer.values, gys, None, None, lay.in_perm, out),
    "inter weight grad": (lambda: native.bsr_sddmm(N // lay.tile, bp, lay.tile, lay.rowptr, lay.cols, gys,
                                                    gys.stride(0), xs, xs.stride(0), gv, 2))
    if lay.tile else (lambda: native.csr_sddmm(N, bp, lay.rowptr, lay.cols, ib, gys, gys.stride(0), xs, xs.stride(0),
                                                gv, 2)),
}
if lay.tile:  # what the layer runs with tiles: the blocks inside the BSR pass (ops._product)
    intra = layer.intra.detach()
    parts["blocks + tiles forward"] = lambda: ops._product(lay, False, intra, layer.values, xs, None, lay.out_perm, out)
    parts["blocks + tiles input grad"] = lambda: ops._product(lay, True, intra, layer.values, gys, None, lay.in_perm,
                                                              out)
else:  # the same inter product by PyTorch's sparse CSR matmul (MKL on x86 builds)
    inter = torch.zeros(N, N)  # sorted rows and columns, as the kernels store them
    rows = torch.repeat_interleave(torch.arange(N), lay.rowptr.diff())
    inter[rows, lay.cols.long()] = layer.values.detach()[:lay.n_values]
    inter_csr, xs_dense = inter.to_sparse_csr(), xs.contiguous()
    parts["inter forward, torch.sparse"] = lambda: inter_csr @ xs_dense

    def both_grads() -> None:  # what the layer runs: the two gradients' inter products in one pass
        t_rows, t_offs, t_vals = ops._transposed(lay, layer.values, 2)
        native.csr_grads(N, bp, lay.t_rowptr, t_rows, t_offs, ib, lay.rowptr, t_vals, gys, gys.stride(0), xs,
                         xs.stride(0), None, 0, lay.in_perm, out, out.stride(0), gv, 2)

    parts["inter both grads, one pass"] = both_grads
print(f"width {N}, batch {B}, tile {lay.tile or 1}, 2 threads; one dense matmul: {mm:.2f} ms")
for name, f in parts.items():
    print(f"  {name:28s} {median_ms(f) / mm:.3f}")
xr = x.clone().requires_grad_()
dense = torch.nn.Linear(N, N)
layer.fast = True


def step(m):
    def run():
        xr.grad = None
        m.zero_grad(set_to_none=True)
        m(xr).backward(gy)
    return run


s, d = median_ms(step(layer)), median_ms(step(dense))
print(f"  {'layer fwd+bwd':28s} {s / mm:.3f}   (nn.Linear {d / mm:.3f}: {d / s:.2f}x)")
