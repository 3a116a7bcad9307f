"""A/B of builds of the C++ kernels on the CSR transposition alone (the input gradient's transposed
pattern and values, built at every backward), with cold caches (a 48 MB buffer written, untimed,
before each call, as the other kernels of a step leave them), interleaved, in one process: median ms
and the first build's time over each other's per repeat, median [min-max].

    git show REV:g2gnet/csrc/g2g_kernels.cpp > /tmp/old.cpp   # REV with this checkout's C prototypes
    python benchmarks/transpose_ab.py old:/tmp/old.cpp new: [--widths 1024,2048,4096] [--repeats 31]

A variant is NAME:[SOURCE][@FLAGS] (benchmarks/variants.py).
"""

import argparse

import torch

from g2gnet.bench import sparse_layer
from g2gnet.kernels import native
from g2gnet.timing import compare, time_interleaved
from variants import build

parser = argparse.ArgumentParser()
parser.add_argument("variants", nargs="+", help="NAME:[SOURCE][@FLAGS] (benchmarks/variants.py), the first is the baseline")
parser.add_argument("--widths", default="1024,2048,4096", help="comma-separated layer widths (in = out)")
parser.add_argument("--repeats", type=int, default=31, help="interleaved repeats")
args = parser.parse_args()
torch.set_num_threads(2)
libs = dict(build(args.variants))
flush = torch.empty(12_000_000)

for width in (int(w) for w in args.widths.split(",")):
    lay, values = (layer := sparse_layer(width)).layout, layer.values.detach()
    t_cols, t_vals = torch.empty(lay.n_values, dtype=lay.cols.dtype), torch.empty(lay.n_values)

    def transpose() -> None:
        native.csr_transpose(lay.n_out, lay.n_in, lay.rowptr, lay.cols, lay.index_bytes, values, lay.t_rowptr,
                             t_cols, t_vals, None, torch.get_num_threads())

    ref = None
    for lib in libs.values():
        native._lib = lib
        transpose()
        if ref is None:
            ref = (t_cols.clone(), t_vals.clone())
        assert torch.equal(ref[0], t_cols) and torch.equal(ref[1], t_vals), "the builds differ"

    def cold(name: str) -> None:
        native._lib = libs[name]
        flush.fill_(1.0)

    times = time_interleaved({name: transpose for name in libs}, args.repeats, warmup=2, before=cold)
    print(compare(f"transpose {width}", times), flush=True)
