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
from unittest import mock

import torch

from g2gnet import malloc
from g2gnet.bench import sparse_layer
from g2gnet.kernels import native, ops
from g2gnet.timing import ratios, time_interleaved

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


def no_kernels():
    """Every native kernel and the block matmuls a no-op (the outputs are left unwritten)."""
    stubs = [mock.patch.object(native, n, lambda *a, **k: None)
             for n in ("csr_spmm", "csr_sddmm", "gather_t", "csr_transpose", "csr_gather", "csr_grads", "bsr_spmm",
                       "bsr_sddmm")]
    stubs.append(mock.patch.object(torch, "bmm", lambda a, b, out=None: out))
    return stubs


for width in (int(w) for w in args.widths.split(",")):
    calls = sides(width)
    del calls["dense"]
    stubs = no_kernels()
    for s in stubs:
        s.start()
    t = time_interleaved(calls, args.repeats, warmup=3, per_repeat=50)
    for s in stubs:
        s.stop()
    med = {k: statistics.median(v) * 1e3 for k, v in t.items()}
    print(f"width {width}, kernels stubbed: custom ops {med['custom ops']:.0f} us, eager {med['eager']:.0f} us "
          f"a step", flush=True)
    t = time_interleaved(sides(width), args.repeats, warmup=3, per_repeat=3)
    line = f"width {width}:"
    for name in ("custom ops", "eager"):
        r = ratios(t, "dense", name)
        line += f"  dense / {name} {statistics.median(r):.2f}x [{min(r):.2f}-{max(r):.2f}]"
    r = ratios(t, "custom ops", "eager")
    print(line + f"  custom ops / eager {statistics.median(r):.3f} [{min(r):.2f}-{max(r):.2f}]", flush=True)
