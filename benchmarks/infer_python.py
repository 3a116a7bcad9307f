"""The Python around the batch-1 inference kernel: a 1024-wide layer of the Fashion-MNIST g2g-mixer
and the whole model timed with the kernel, then with the kernel calls replaced by no-ops (the
layer's plan and the model's chain, which runs its layers' kernels in one native call; what is
left is the module calls, the dispatcher, the plan's checks, the output tensor and the ctypes
call), then each step of the layer's path alone (median µs per call of 7 rounds, warm caches).

    python benchmarks/infer_python.py
"""

import statistics
import time

import torch

import g2gnet
from g2gnet import malloc
from g2gnet.kernels import dispatch, infer, native
from g2gnet.layers import sparse_layers

malloc.keep_defaults()  # dense as plain PyTorch runs it: no g2gnet allocator setting (g2gnet.malloc)

torch.set_num_threads(2)
model = g2gnet.build_model("g2g-mixer", 784, 10, hidden=[1024] * 3, seed=0).eval()
dense = g2gnet.build_model("dense", 784, 10, hidden=[1024] * 3, seed=0).eval()
layer = sparse_layers(model)[1][1]
packed = layer.packed
x, x1 = torch.randn(1, 784), torch.randn(1, 1024)


def us(f, n: int = 2000) -> float:
    for _ in range(n // 10):
        f()
    rounds = []
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(n):
            f()
        rounds.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(rounds)


with torch.inference_mode():
    print(f"whole model: g2g {us(lambda: model(x)):.1f} µs, dense {us(lambda: dense(x)):.1f} µs")
    print(f"layer 1024: {us(lambda: layer(x1)):.1f} µs")
    for _, sparse in sparse_layers(model):
        for plan in sparse.packed.infer_plans.values():
            plan.fn = lambda ref: None  # the kernel call a no-op: the Python around it is left
    native.infer_chain = lambda *args: None  # and the whole model's one call of its layers' kernels
    print(f"without the kernel: whole model {us(lambda: model(x)):.1f} µs, layer {us(lambda: layer(x1)):.1f} µs")
    plan = next(iter(packed.infer_plans.values()))
    intra, values, bias = packed.intra, packed.values, layer.bias
    steps = {"module call + forward": lambda: layer(x1), "choose": lambda: dispatch.choose(layer, x1),
             "native_infer": lambda: dispatch.native_infer(layer, x1),
             "infer_eager": lambda: infer.infer_eager(packed, x1, bias),
             "plan (checks, output, ctypes)": lambda: plan(x1, intra, values, bias),
             "torch.empty(1, 1024)": lambda: torch.empty(1, 1024)}
    for name, f in steps.items():
        print(f"  {name:32s} {us(f):6.2f} µs")
