"""A single layer's eager inference (eval() under torch.inference_mode(), batches above 16 rows: the
batched kernels) with its layout checked at every call ("old": the memo reset before each call) or
once per layout version ("new": ``Layout.checked``), against nn.Linear; interleaved repeats in one
process, medians [min-max] of per-repeat ratios.

    python benchmarks/layout_check_ab.py
"""

import statistics

import torch

from g2gnet import malloc
from g2gnet.bench import sparse_layer
from g2gnet.timing import ratios, time_interleaved

malloc.keep_defaults()  # dense as plain PyTorch runs it: no g2gnet allocator setting (g2gnet.malloc)
torch.set_num_threads(2)
for N in (1024, 2048):
    layer, dense = sparse_layer(N, 1).eval(), torch.nn.Linear(N, N).eval()
    lay = layer.packed.layout
    for B in (17, 64, 256):
        x = torch.randn(B, N)
        reps = max(1, 1024 // B)

        def old() -> None:
            lay.checked = False
            layer(x)

        calls = {"dense": lambda: dense(x), "old": old, "new": lambda: layer(x)}
        with torch.inference_mode():
            times = time_interleaved(calls, 15, warmup=1, per_repeat=reps)
        r, d = ratios(times, "old", "new"), ratios(times, "dense", "new")
        print(f"{N} wide, batch {B}: old / new {statistics.median(r):.3f} [{min(r):.2f}-{max(r):.2f}]  "
              f"(new {statistics.median(times['new']) * 1e3:.0f} us, dense / new {statistics.median(d):.2f}x)", flush=True)
