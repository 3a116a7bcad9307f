"""What the custom ops' Python layers cost a G2G layer's eager training step (forward + backward,
batch 256, 2 threads): the layer through the custom ops (``g2gnet::linear_fwd`` / ``linear_bwd``, as
torch.compile sees them) against the same checks and kernels called directly (``ops.linear_eager``,
what eager training runs), both against nn.Linear, interleaved repeats in one process.

First with every kernel replaced by a no-op (so only the Python and PyTorch work around the kernels
is left: microseconds per step), then for real (medians [min-max] of per-repeat ratios).

    python benchmarks/op_overhead.py [--widths 1024,2048] [--repeats 15]
"""

import argparse
import statistics
import time
from unittest import mock

import torch

from g2gnet import malloc
from g2gnet.bench import sparse_layer
from g2gnet.kernels import native, ops

parser = argparse.ArgumentParser()
parser.add_argument("--widths", default="1024,2048", help="comma-separated layer widths")
parser.add_argument("--repeats", type=int, default=15, help="interleaved repeats")
args = parser.parse_args()
malloc.keep_defaults()  # dense as plain PyTorch runs it: no g2gnet allocator setting (g2gnet.malloc)
torch.set_num_threads(2)
B = 256


def sides(width: int) -> dict:
    layer, dense = sparse_layer(width, 1), torch.nn.Linear(width, width)
    layer.fast = True
    x = torch.randn(B, width, requires_grad=True)
    gy = torch.randn(B, width)

    def step(m, eager: bool = True):
        def run():
            x.grad = None
            m.zero_grad(set_to_none=True)
            with mock.patch.object(ops, "eager_ok", lambda: eager):
                m(x).backward(gy)
        return run

    return {"dense": step(dense), "custom ops": step(layer, eager=False), "eager": step(layer)}


def interleaved(calls: dict, reps: int, repeats: int) -> dict[str, list[float]]:
    for f in calls.values():
        for _ in range(3):
            f()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, f in calls.items():
            t = time.perf_counter()
            for _ in range(reps):
                f()
            times[name].append((time.perf_counter() - t) / reps)
    return times


def no_kernels():
    """Every native kernel and the block matmuls a no-op (the outputs are left unwritten)."""
    stubs = [mock.patch.object(native, n, lambda *a, **k: None)
             for n in ("csr_spmm", "csr_sddmm", "gather_t", "csr_transpose", "bsr_spmm", "bsr_sddmm")]
    stubs.append(mock.patch.object(torch, "bmm", lambda a, b, out=None: out))
    return stubs


for width in (int(w) for w in args.widths.split(",")):
    calls = sides(width)
    del calls["dense"]
    stubs = no_kernels()
    for s in stubs:
        s.start()
    t = interleaved(calls, 50, args.repeats)
    for s in stubs:
        s.stop()
    med = {k: statistics.median(v) * 1e6 for k, v in t.items()}
    print(f"width {width}, kernels stubbed: custom ops {med['custom ops']:.0f} us, eager {med['eager']:.0f} us "
          f"a step", flush=True)
    t = interleaved(sides(width), 3, args.repeats)
    line = f"width {width}:"
    for name in ("custom ops", "eager"):
        r = [d / s for d, s in zip(t["dense"], t[name])]
        line += f"  dense / {name} {statistics.median(r):.2f}x [{min(r):.2f}-{max(r):.2f}]"
    r = [a / b for a, b in zip(t["custom ops"], t["eager"])]
    print(line + f"  custom ops / eager {statistics.median(r):.3f} [{min(r):.2f}-{max(r):.2f}]", flush=True)
