"""A/B of the batch padding in one process: the kernels' batch columns rounded up to 16 (the rule
before ``ops.padded`` followed the build's vector width) against the current rule, and nn.Linear,
for eval() forwards under inference_mode at batches above the inference kernel's 16 rows (median
µs, the first side's time over each other's per repeat, median [min-max]):

    python benchmarks/padding_ab.py [--widths 1024,2048] [--tiles 1,32] [--batches 17,20,24,33,40] [--reps 21]
"""

import argparse

import torch

from g2gnet import malloc
from g2gnet.bench import sparse_layer
from g2gnet.kernels import ops
from g2gnet.timing import compare, time_interleaved

parser = argparse.ArgumentParser()
parser.add_argument("--widths", default="1024,2048", help="comma-separated layer widths (in = out)")
parser.add_argument("--tiles", default="1,32", help="comma-separated tile sizes (1: element-wise)")
parser.add_argument("--batches", default="17,20,24,33,40", help="comma-separated batch sizes")
parser.add_argument("--reps", type=int, default=21, help="interleaved repeats")
args = parser.parse_args()
malloc.keep_defaults()  # nn.Linear as plain PyTorch runs it (g2gnet.malloc)
torch.set_num_threads(2)
current = ops.padded
rules = {"pad16": lambda n: (n + 15) // 16 * 16, "current": current}
for width in map(int, args.widths.split(",")):
    for tile in map(int, args.tiles.split(",")):
        layer, dense = sparse_layer(width, tile).eval(), torch.nn.Linear(width, width).eval()
        for b in map(int, args.batches.split(",")):
            x = torch.randn(b, width)
            calls = {"pad16": lambda: layer(x), "current": lambda: layer(x), "dense": lambda: dense(x)}

            def before(name: str) -> None:
                ops.padded = rules.get(name, current)

            with torch.inference_mode():
                times = time_interleaved(calls, args.reps, 3, before=before)
            ops.padded = current
            us = {k: [t * 1e3 for t in v] for k, v in times.items()}
            print(compare(f"width {width} tile {tile} batch {b} (padded {rules['pad16'](b)} / {current(b)})", us, "us"),
                  flush=True)
