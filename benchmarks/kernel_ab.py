"""A/B of builds of the C++ kernels in one process: each variant is compiled from a source file with
extra flags and loaded beside the others; the inter products (forward, input gradient, weight
gradient) of the bench layer, or with --layer its whole forward + backward, are timed interleaved
(median ms, and the first variant's time over each other's per pair, median [min-max]).

    git show d631cd6:g2gnet/csrc/g2g_kernels.cpp > /tmp/old.cpp
    python benchmarks/kernel_ab.py old:/tmp/old.cpp new: [--layer] [--width 2048] [--tiles 1,32] [--reps 15]

A variant is NAME:[SOURCE][@FLAGS] (SOURCE defaults to this checkout's, e.g. "nv3:@-DBSR_NV=3").
The Python side (chunk sizes, layouts) is this checkout's for every variant.
"""

import argparse
import ctypes
import statistics
import subprocess
import time

import torch

from g2gnet.bench import sparse_layer
from g2gnet.kernels import native, ops

parser = argparse.ArgumentParser()
parser.add_argument("variants", nargs="+")
parser.add_argument("--layer", action="store_true", help="time the whole layer's forward + backward")
parser.add_argument("--width", type=int, default=2048)
parser.add_argument("--tiles", default="1,32")
parser.add_argument("--reps", type=int, default=15)
args = parser.parse_args()
torch.set_num_threads(2)
native.get()
variants = []
for spec in args.variants:
    name, _, rest = spec.partition(":")
    src, _, flags = rest.partition("@")
    src = src or str(native.SOURCE)
    so = f"/tmp/kernel_ab_{name}.so"
    subprocess.run(["g++", *native._flags(), *flags.split(), src, "-o", so], check=True)
    lib = ctypes.CDLL(so)
    for fn, proto in native.prototypes(open(src).read()).items():
        f = getattr(lib, fn)
        f.argtypes, f.restype = [native._CTYPES[c] for c, _ in proto], None
    variants.append((name, lib))


def report(label: str, ts: dict[str, list[float]]) -> None:
    base = variants[0][0]
    line = f"{label}: " + "  ".join(f"{n} {statistics.median(v):.3f}ms" for n, v in ts.items())
    for n, v in ts.items():
        if n != base:
            r = [a / b for a, b in zip(ts[base], v)]
            line += f"  {base}/{n} {statistics.median(r):.3f} [{min(r):.2f}-{max(r):.2f}]"
    print(line, flush=True)


def timed(parts: dict, label: str) -> None:
    for pname, f in parts.items():
        outs = {}
        for name, lib in variants:
            native._lib = lib
            outs[name] = f()
        ref = outs[variants[0][0]]
        for name, out in outs.items():
            torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-3, msg=f"{pname}: {name} differs")
        ts = {name: [] for name, _ in variants}
        for _ in range(args.reps):
            for name, lib in variants:
                native._lib = lib
                t = time.perf_counter()
                f()
                ts[name].append((time.perf_counter() - t) * 1e3)
        report(f"{label} {pname}", ts)


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
    init = torch.randn(N, ops.row_stride(bp))[:, :bp]
    out = torch.empty(N, ops.row_stride(bp))[:, :bp]
    gv = torch.empty(values.numel())

    def product(transposed):
        def run():
            ops._sparse_rows(lay, transposed, values, gys if transposed else xs, init, None,
                             lay.in_perm if transposed else lay.out_perm, out)
            return out.clone()
        return run

    def weight_grad():
        if lay.tile:
            native.bsr_sddmm(N // lay.tile, bp, lay.tile, lay.rowptr, lay.cols, gys, gys.stride(0), xs, xs.stride(0), gv, 2)
        else:
            native.csr_sddmm(N, bp, lay.rowptr, lay.cols, lay.index_bytes, gys, gys.stride(0), xs, xs.stride(0), gv, 2)
        return gv.clone()
    timed({"forward": product(False), "input grad": product(True), "weight grad": weight_grad}, label)
