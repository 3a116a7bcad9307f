"""Where a batch-1 call of the whole Fashion-MNIST g2g-mixer goes (eval(), inference_mode, 2
threads): the model call against the serving chain's native call alone (the three layers' kernels
and ReLUs), the chain's Python (checks and arguments), the MLP's test of whether to chain, and
the dense classifier; then dense for scale. Median µs per call over 9 interleaved rounds [min-max].

    python benchmarks/serve_parts.py [--batch 1]
"""

import argparse
import statistics
import time

import torch

import g2gnet
from g2gnet import malloc
from g2gnet.kernels import native
from g2gnet.kernels.chain import infer_chain

parser = argparse.ArgumentParser()
parser.add_argument("--batch", type=int, default=1, help="rows per call (at most 16: the serving chain)")
args = parser.parse_args()
malloc.keep_defaults()  # dense as plain PyTorch runs it: no g2gnet allocator setting (g2gnet.malloc)
torch.set_num_threads(2)
model = g2gnet.build_model("g2g-mixer", 784, 10, hidden=[1024] * 3, seed=0).eval()
dense = g2gnet.build_model("dense", 784, 10, hidden=[1024] * 3, seed=0).eval()
x = torch.randn(args.batch, 784)
layers = [b.linear for b in model.blocks]


def us(f, n: int = 500) -> float:
    for _ in range(50):
        f()
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n * 1e6


with torch.inference_mode():
    model(x)
    chain = infer_chain(model.__dict__, layers)
    h = torch.relu(torch.randn(args.batch, 1024))
    y = torch.empty(args.batch, 1024)

    def native_only() -> None:  # the chain's one native call, on buffers that outlive it
        chain.plans[0].args.x, chain.plans[-1].args.y = x.data_ptr(), y.data_ptr()
        native.infer_chain(chain.list, len(chain.plans))

    parts = {"whole model": lambda: model(x), "the chain (Python + native)": lambda: chain(layers, x),
             "its native call alone": native_only, "MLP._stack_path": lambda: model._stack_path(x),
             "head (nn.Linear 1024 -> 10)": lambda: model.head(h), "dense MLP": lambda: dense(x)}
    times: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(9):
        for name, f in parts.items():
            times[name].append(us(f))
print(f"batch {args.batch}, 2 threads, µs per call, median of 9 rounds [min-max]")
for name, t in times.items():
    print(f"  {name:30s} {statistics.median(t):7.1f} [{min(t):.1f}-{max(t):.1f}]")
r = [d / g for d, g in zip(times["dense MLP"], times["whole model"])]
print(f"  dense / whole model: {statistics.median(r):.2f}x [{min(r):.2f}-{max(r):.2f}]")
