"""A/B of builds of the C++ kernels on the layout changes alone: the transposed gather of a [batch, N]
input into the kernels' sorted [N, Bp] layout (``ops.gather_t``, a random permutation) and the
untranspose back (``ops._untransposed``), at each width and batch; interleaved in one process, the
outputs asserted equal (median ms, the first variant's time over each other's per pair, median
[min-max]). For the whole layer use ``kernel_ab.py --layer``.

    python benchmarks/gather_ab.py old:OLD.cpp new: [--widths 784,1024,2048,4096] [--batches 256,1000]

A variant is NAME:[SOURCE][@FLAGS] (benchmarks/variants.py).
"""

import argparse

import torch

from g2gnet.kernels import ops
from variants import ab, build

parser = argparse.ArgumentParser()
parser.add_argument("variants", nargs="+", help="NAME:[SOURCE][@FLAGS] (benchmarks/variants.py), the first is the baseline")
parser.add_argument("--widths", default="784,1024,2048,4096", help="comma-separated feature counts N")
parser.add_argument("--batches", default="256,1000", help="comma-separated batch sizes")
parser.add_argument("--reps", type=int, default=21, help="interleaved repeats (of 20 calls each)")
args = parser.parse_args()
torch.set_num_threads(2)
libs = dict(build(args.variants))

for n in (int(w) for w in args.widths.split(",")):
    for batch in (int(b) for b in args.batches.split(",")):
        bp = ops.padded(batch)
        x, perm = torch.randn(batch, n), torch.randperm(n)
        t = torch.randn(n, ops.row_stride(bp))[:, :bp]
        for label, f in (("gather", lambda: ops.gather_t(x, perm, bp, scratch=True)),
                         ("untranspose", lambda: ops._untransposed(t, batch))):
            ab(libs, f"width {n} batch {batch} {label}", f, args.reps, exact=True, warmup=3, per_repeat=20)
