"""The CSR products' batch chunk (``ops._chunk``: batch columns per pass, whose slice of the
activations should stay in L2) crossed with builds of the kernels (e.g. the prefetch distance PD),
in one process: the 2048-wide bench layer's inter-ensemble forward product and input-gradient
product at batch 256, 2 threads, interleaved repeats; median ms and the first combination's time
over each other's, median of per-repeat ratios.

    python benchmarks/chunk_ab.py "pd16: pd0:@-DPD=0" pd16/64,pd0/32,pd16/32 [--width 2048] [--repeats 15]

Builds are NAME:[SOURCE][@FLAGS] (benchmarks/variants.py); a combination is BUILD/CHUNK.
"""

import argparse
import statistics

import torch

from g2gnet.bench import sparse_layer
from g2gnet.kernels import native, ops
from g2gnet.timing import ratios, time_interleaved
from variants import build

parser = argparse.ArgumentParser()
parser.add_argument("builds", help="space-separated NAME:[SOURCE][@FLAGS]")
parser.add_argument("combos", help="comma-separated BUILD/CHUNK, the first is the baseline")
parser.add_argument("--width", type=int, default=2048, help="layer width (in = out)")
parser.add_argument("--repeats", type=int, default=15, help="interleaved repeats")
args = parser.parse_args()
torch.set_num_threads(2)
libs = dict(build(args.builds.split()))
combos = [(name, int(chunk)) for name, chunk in (c.split("/") for c in args.combos.split(","))]
N, B = args.width, 256
layer = sparse_layer(N, 1)
lay, vals = layer.layout, layer.values.detach()
bp = ops.padded(B)
xs, gys = ops.gather_t(torch.randn(B, N), lay.in_perm, bp), ops.gather_t(torch.randn(B, N), lay.out_perm, bp)
out = torch.empty(N, ops.row_stride(bp))[:, :bp]
parts = {"forward": lambda: ops._sparse_rows(lay, False, vals, xs, None, None, lay.out_perm, out),
         "input grad": lambda: ops._sparse_rows(lay, True, vals, gys, None, None, lay.in_perm, out)}
default_chunk = ops._chunk


def use(name: str, chunk: int) -> None:
    native._lib = libs[name]
    ops._chunk = lambda rows: chunk


ref = None
for c in combos:
    use(*c)
    parts["forward"]()
    ref = out.clone() if ref is None else ref
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-3)


times = time_interleaved({(c, p): f for c in combos for p, f in parts.items()}, args.repeats, per_repeat=5,
                         before=lambda key: use(*key[0]))
ops._chunk = default_chunk
for c in combos:
    line = f"{c[0]} chunk {c[1]}:"
    for p in parts:
        r = ratios(times, (combos[0], p), (c, p))
        line += f"  {p} {statistics.median(times[c, p]):.3f} ms ({statistics.median(r):.3f})"
    print(line, flush=True)
