"""A/B of builds of the C++ kernels in one process: each variant is compiled from a source file with
extra flags and loaded beside the others; the inter products (forward, input gradient, weight
gradient; the first two with the layer's diagonal blocks, as ops._product runs them; element-wise,
both gradients in one pass as the layer's backward runs them) of the bench layer, or with --layer
its whole forward + backward, are timed interleaved (median ms, and the first variant's time over
each other's per pair, median [min-max]).

    git show REV:g2gnet/csrc/g2g_kernels.cpp > /tmp/old.cpp   # REV with this checkout's C prototypes
    python benchmarks/kernel_ab.py old:/tmp/old.cpp new: [--layer] [--width 2048] [--tiles 1,32] [--reps 15]

A variant is NAME:[SOURCE][@FLAGS] (benchmarks/variants.py; e.g. "nv3:@-DBSR_NV=3").
The Python side (chunk sizes, layouts) is this checkout's for every variant.
"""

import argparse

import torch

from g2gnet.bench import sparse_layer
from g2gnet.kernels import native, ops
from variants import ab, build

parser = argparse.ArgumentParser()
parser.add_argument("variants", nargs="+", help="NAME:[SOURCE][@FLAGS] (benchmarks/variants.py), the first is the baseline")
parser.add_argument("--layer", action="store_true", help="time the whole layer's forward + backward")
parser.add_argument("--width", type=int, default=2048, help="layer width (in = out)")
parser.add_argument("--tiles", default="1,32", help="comma-separated tile sizes (1: element-wise)")
parser.add_argument("--reps", type=int, default=15, help="interleaved repeats")
args = parser.parse_args()
torch.set_num_threads(2)
libs = dict(build(args.variants))


def timed(parts: dict, label: str) -> None:
    for pname, f in parts.items():
        ab(libs, f"{label} {pname}", f, args.reps)

N, B = args.width, 256
for tile in (int(t) for t in args.tiles.split(",")):
    layer = sparse_layer(N, tile)
    lay, values = layer.layout, layer.values.detach()
    label = f"width {N} tile {tile}"
    if args.layer:
        x, gy = torch.randn(B, N, requires_grad=True), torch.randn(B, N)

        def step():
            x.grad = None
            layer.zero_grad(set_to_none=True)
            layer(x).backward(gy)
            return x.grad.clone()
        timed({"forward+backward": step}, label)
        continue
    bp = 256
    xs, gys = ops.gather_t(torch.randn(B, N), lay.in_perm, bp), ops.gather_t(torch.randn(B, N), lay.out_perm, bp)
    out = torch.empty(N, ops.row_stride(bp))[:, :bp]
    gv = torch.empty(values.numel())

    def product(transposed):
        def run():
            ops._product(lay, transposed, layer.intra.detach(), values, gys if transposed else xs, None,
                         lay.in_perm if transposed else lay.out_perm, out)
            return out.clone()
        return run

    def weight_grad():
        if lay.tile:
            native.bsr_sddmm(N // lay.tile, bp, lay.tile, lay.rowptr, lay.cols, gys, gys.stride(0), xs, xs.stride(0), gv, 2)
        else:
            native.csr_sddmm(N, bp, lay.rowptr, lay.cols, lay.index_bytes, gys, gys.stride(0), xs, xs.stride(0), gv, 2)
        return gv.clone()
    parts = {"forward": product(False), "input grad": product(True), "weight grad": weight_grad}
    if not lay.tile:  # the element-wise backward's one-pass kernel on the layout's kept pattern

        def both_grads():
            rows, offs, t_vals = ops._transposed(lay, values, 2)
            native.csr_grads(N, bp, lay.t_rowptr, rows, offs, lay.index_bytes, lay.rowptr, t_vals, gys, gys.stride(0),
                             xs, xs.stride(0), None, 0, lay.in_perm, out, out.stride(0), gv, 2)
            return torch.cat([out.flatten(), gv])

        parts["both grads, one pass"] = both_grads
    timed(parts, label)
