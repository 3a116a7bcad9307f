"""A G2G layer's training step timed stage by stage, in the order the ops run them (caches as in
a real step, unlike benchmarks/parts.py, which repeats each part alone): fractions of one dense
matmul of the same shape, medians of 20 steps, 2 threads: python benchmarks/step_stages.py WIDTH [TILE]

Stages: forward (transposed gather of the input, blocks and inter product (``ops._product``: one
BSR pass with tiles, a block matmul then the CSR product without), untranspose), then backward
(gradient buffers, gather of the output gradient, blocks and inter product of the input gradient,
untranspose, block matmul and sampled product of the weight gradient, bias).
"""

import statistics
import sys
import time

import torch

from g2gnet import malloc
from g2gnet.bench import sparse_layer
from g2gnet.kernels import native, ops
from g2gnet.malloc import huge

malloc.keep_defaults()  # dense as plain PyTorch runs it: no g2gnet allocator setting (g2gnet.malloc)

torch.set_num_threads(2)
N, B = int(sys.argv[1]), 256
tile = int(sys.argv[2]) if len(sys.argv) > 2 else 1
layer = sparse_layer(N, tile)
lay, intra, values = layer.layout, layer.intra.detach(), layer.values.detach()
x, gy, dense_w = torch.randn(B, N), torch.randn(B, N), torch.randn(N, N)
times: dict[str, list[float]] = {}


def tick(name: str, t0: float) -> float:
    t1 = time.perf_counter()
    times.setdefault(name, []).append(t1 - t0)
    return t1


def step() -> None:
    """linear_fwd and linear_bwd of g2gnet/kernels/ops.py, their calls in their order."""
    bp, nt = ops.padded(B), 2
    t = time.perf_counter()
    xs = ops.gather_t(x, lay.in_perm, bp)
    t = tick("forward: gather (transpose)", t)
    out = ops._padded_rows("out", lay.n_out, bp)
    ops._product(lay, False, intra, values, xs, layer.bias.detach(), lay.out_perm, out)
    t = tick("forward: blocks + inter product", t)
    ops._untransposed(out, B)
    t = tick("forward: untranspose", t)
    gi, gv = huge(torch.empty(lay.intra_shape)), huge(torch.empty(values.numel()))
    gys = ops.gather_t(gy, lay.out_perm, bp, scratch=True)
    t = tick("backward: buffers, gather", t)
    gxs = ops._padded_rows("gx", lay.n_in, bp)
    ops._block_grads_into(lay, gys, xs, gi, gv)
    t = tick("backward: block bmm (weight grad)", t)
    if lay.tile:
        ops._product(lay, True, intra, values, gys, None, lay.in_perm, gxs)
        t = tick("backward: blocks + inter product (input grad)", t)
        native.bsr_sddmm(N // lay.tile, bp, lay.tile, lay.rowptr, lay.cols, gys, gys.stride(0), xs, xs.stride(0), gv, nt)
        t = tick("backward: sampled product (weight grad)", t)
    else:  # ops._grads_into
        ys = ops._block_product(lay, ops._seen_blocks(lay, intra, True), gys)
        t = tick("backward: block bmm (input grad)", t)
        t_rows, t_offs, t_vals = ops._transposed(lay, values, nt)
        t = tick("backward: transposed values (kept pattern)", t)
        native.csr_grads(N, bp, lay.t_rowptr, t_rows, t_offs, lay.index_bytes, lay.rowptr, t_vals, gys,
                         gys.stride(0), xs, xs.stride(0), ys, ys.stride(0), lay.in_perm, gxs, gxs.stride(0), gv, nt)
        t = tick("backward: inter products (input + weight grad)", t)
    ops._untransposed(gxs, B)
    t = tick("backward: untranspose", t)
    gy.sum(0)
    tick("backward: bias", t)


dense = []
for i in range(25):
    if i == 5:
        times.clear()
    step()
    t0 = time.perf_counter()
    x @ dense_w.T
    dense.append(time.perf_counter() - t0)
mm = statistics.median(dense[5:])
print(f"width {N}, batch {B}, tile {lay.tile or 1}, 2 threads; one dense matmul: {mm * 1e3:.2f} ms")
total = 0.0
for name, ts in times.items():
    total += statistics.median(ts)
    print(f"  {name:42s} {statistics.median(ts) / mm:.3f}")
print(f"  {'sum of the stages':42s} {total / mm:.3f}")
