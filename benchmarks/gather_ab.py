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

from g2gnet.kernels import native, ops
from g2gnet.timing import compare, time_interleaved
from variants import build

parser = argparse.ArgumentParser()
parser.add_argument("variants", nargs="+", help="NAME:[SOURCE][@FLAGS] (benchmarks/variants.py), the first is the baseline")
parser.add_argument("--widths", default="784,1024,2048,4096", help="comma-separated feature counts N")
parser.add_argument("--batches", default="256,1000", help="comma-separated batch sizes")
parser.add_argument("--reps", type=int, default=21, help="interleaved repeats (of 20 calls each)")
args = parser.parse_args()
torch.set_num_threads(2)
libs = dict(build(args.variants))


def use(name: str) -> None:
    native._lib = libs[name]


for n in (int(w) for w in args.widths.split(",")):
    for batch in (int(b) for b in args.batches.split(",")):
        bp = ops.padded(batch)
        x, perm = torch.randn(batch, n), torch.randperm(n)
        t = torch.randn(n, ops.row_stride(bp))[:, :bp]
        for label, f in (("gather", lambda: ops.gather_t(x, perm, bp, scratch=True)),
                         ("untranspose", lambda: ops._untransposed(t, batch))):
            outs = []
            for name in libs:
                use(name)
                outs.append(f().clone())
            assert all(torch.equal(o, outs[0]) for o in outs), label
            times = time_interleaved({name: f for name in libs}, args.reps, 3, per_repeat=20, before=use)
            print(compare(f"width {n} batch {batch} {label}", times), flush=True)
