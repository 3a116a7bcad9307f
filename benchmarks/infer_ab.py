"""A/B of builds of the C++ kernels for inference in one process (as benchmarks/kernel_ab.py for
training): each variant is compiled from a source file with extra flags and loaded beside the
others; a layer's eval() forward under inference_mode, or the whole Fashion-MNIST g2g-mixer, is
timed at the given batch sizes, interleaved (median µs, the first variant's time over each
other's per pair, median [min-max]).

    git show REV:g2gnet/csrc/g2g_kernels.cpp > /tmp/old.cpp   # REV with this checkout's C prototypes
    python benchmarks/infer_ab.py old:/tmp/old.cpp new: [--width 1024] [--tiles 32] [--batches 1,8] [--model] [--reps 15]

A variant is NAME:[SOURCE][@FLAGS] (benchmarks/variants.py).
"""

import argparse

import torch

import g2gnet
from g2gnet.bench import sparse_layer
from g2gnet.kernels import native
from g2gnet.timing import compare, time_interleaved
from variants import build

parser = argparse.ArgumentParser()
parser.add_argument("variants", nargs="+", help="NAME:[SOURCE][@FLAGS] (benchmarks/variants.py), the first is the baseline")
parser.add_argument("--width", type=int, default=1024, help="layer width (in = out)")
parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
parser.add_argument("--tiles", type=int, default=1, help="inter-ensemble tile size of the layer (1: element-wise)")
parser.add_argument("--model", action="store_true", help="the whole Fashion-MNIST g2g-mixer instead of one layer")
parser.add_argument("--reps", type=int, default=15, help="interleaved repeats")
args = parser.parse_args()
torch.set_num_threads(2)
variants = build(args.variants)

model = g2gnet.build_model("g2g-mixer", 784, 10).eval() if args.model else sparse_layer(args.width, args.tiles).eval()
layers = [m for m in model.modules() if isinstance(m, g2gnet.SparseLinear)]
n_in = 784 if args.model else args.width


def use(lib) -> None:
    native._lib = lib
    for layer in layers:
        layer.packed.infer_plans.clear()  # a plan holds the library's function


base = variants[0][0]
with torch.inference_mode():
    for batch in (int(b) for b in args.batches.split(",")):
        x = torch.randn(batch, n_in)
        reps = max(1, 512 // batch)
        outs = {}
        for name, lib in variants:
            use(lib)
            outs[name] = model(x)
        for name, out in outs.items():
            torch.testing.assert_close(out, outs[base], rtol=1e-4, atol=1e-4, msg=f"{name} differs")
        libs = dict(variants)

        def switch(name: str) -> None:
            use(libs[name])
            model(x)  # untimed: builds the plans for this library

        ms = time_interleaved({name: lambda: model(x) for name in libs}, args.reps, per_repeat=reps, before=switch)
        ts = {name: [t * 1e3 for t in v] for name, v in ms.items()}
        print(compare(f"batch {batch}", ts, "us"), flush=True)
