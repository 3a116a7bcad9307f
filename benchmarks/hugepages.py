"""Huge pages for the step buffers (g2gnet.malloc.huge), on and off in one process: a SparseLinear
N x N (G = 8, p' = 0.15) forward + backward at batch 256, 8 interleaved pairs of 5-step medians,
then the minor page faults per step: python benchmarks/hugepages.py [N]"""

import resource
import statistics
import sys
import time

import torch

import g2gnet.malloc as malloc
from g2gnet import SparseLinear
from g2gnet.topology import group_ids, modular_mask

torch.set_num_threads(2)
N, B = int(sys.argv[1]) if len(sys.argv) > 1 else 4096, 256
g = torch.Generator().manual_seed(0)
og, ig = group_ids(N, 8, "random", g), group_ids(N, 8, "random", g)
layer = SparseLinear(N, N, modular_mask(og, ig, 1.0, 0.15, g), in_groups=ig, out_groups=og, generator=g)
layer.fast = True
x, gy = torch.randn(B, N, requires_grad=True), torch.randn(B, N)


def step() -> None:
    x.grad = None
    layer.zero_grad(set_to_none=True)
    layer(x).backward(gy)


def median_ms(reps: int = 5) -> float:
    for _ in range(2):
        step()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


times = {False: [], True: []}
for _ in range(8):
    for on in (False, True):
        malloc._HUGE_ENV = on
        times[on].append(median_ms())
ratios = [a / b for a, b in zip(times[False], times[True])]
print(f"N={N}: off {statistics.median(times[False]):.1f} ms, on {statistics.median(times[True]):.1f} ms, "
      f"off/on median {statistics.median(ratios):.3f} [{min(ratios):.2f}-{max(ratios):.2f}]")
for on in (False, True):
    malloc._HUGE_ENV = on
    step()
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        step()
    print(f"huge pages {'on' if on else 'off'}: {(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 5:.0f} minor faults per step")
