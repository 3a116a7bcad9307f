"""A single layer's eager inference (eval() under torch.inference_mode(), batches above 16 rows: the
batched kernels) with its layout checked at every call ("old": the memo reset before each call) or
once per layout version ("new": ``Layout.checked``), against nn.Linear; interleaved repeats in one
process, medians [min-max] of per-repeat ratios.

    python benchmarks/layout_check_ab.py
"""

import statistics
import time

import torch

from g2gnet import malloc
from g2gnet.bench import sparse_layer

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
        times = {k: [] for k in calls}
        with torch.inference_mode():
            for f in calls.values():
                f()
            for _ in range(15):
                for k, f in calls.items():
                    t = time.perf_counter()
                    for _ in range(reps):
                        f()
                    times[k].append((time.perf_counter() - t) / reps)
        r = [a / b for a, b in zip(times["old"], times["new"])]
        d = [a / b for a, b in zip(times["dense"], times["new"])]
        print(f"{N} wide, batch {B}: old / new {statistics.median(r):.3f} [{min(r):.2f}-{max(r):.2f}]  "
              f"(new {statistics.median(times['new']) * 1e6:.0f} us, dense / new {statistics.median(d):.2f}x)", flush=True)
