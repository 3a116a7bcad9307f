"""Huge pages for the step buffers (g2gnet.malloc.huge), on and off in one process: a SparseLinear
N x N (G = 8, p' = 0.15) forward + backward at batch 256, 16 interleaved repeats of 5 steps (the
bench's statistic, g2gnet.timing), then the minor page faults per step: python benchmarks/hugepages.py [N]"""

import resource
import sys

import torch

import g2gnet.malloc as malloc
from g2gnet.bench import sparse_layer
from g2gnet.timing import median_repeat, time_pairs

torch.set_num_threads(2)
N, B = int(sys.argv[1]) if len(sys.argv) > 1 else 4096, 256
layer = sparse_layer(N)
layer.fast = True
x, gy = torch.randn(B, N, requires_grad=True), torch.randn(B, N)


def step() -> None:
    x.grad = None
    layer.zero_grad(set_to_none=True)
    layer(x).backward(gy)


def step_with(on: bool):
    def run() -> None:
        malloc._HUGE_ENV = on
        step()
    return run


# 16 repeats of 5 steps, the two sides interleaved (g2gnet.timing: the bench's own pairing and statistic)
times = time_pairs({"off": step_with(False), "on": step_with(True)}, repeats=16, warmup=2, per_repeat=5)
row = median_repeat(times["off"], times["on"])
print(f"N={N}: off {row['dense']:.1f} ms, on {row['g2g']:.1f} ms (the median repeat), off/on {row['ratio']:.3f} "
      f"[{row['ratio_min']:.2f}-{row['ratio_max']:.2f}]")
for on in (False, True):
    malloc._HUGE_ENV = on
    step()
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        step()
    print(f"huge pages {'on' if on else 'off'}: {(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 5:.0f} minor faults per step")
