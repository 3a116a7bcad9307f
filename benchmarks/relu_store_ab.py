"""The batched stack's ReLU applied as the kernels store each row (what the stack does) against a
separate ``relu_`` pass over each hidden layer's output, in one process: the whole Fashion-MNIST
g2g-mixer in inference (eval() under torch.inference_mode()) at batch 32, 64 and 256, against the
dense MLP; 25 interleaved repeats (rotating and reversing order), medians [min-max] of per-repeat
ratios. Both sides run this checkout's stack and kernels; only the ReLU differs.

    python benchmarks/relu_store_ab.py
"""

import statistics

import torch

import g2gnet
from g2gnet import malloc
from g2gnet.kernels import ops
from g2gnet.timing import ratios, time_interleaved

malloc.keep_defaults()  # dense as plain PyTorch runs it: no g2gnet allocator setting (g2gnet.malloc)
torch.set_num_threads(2)
current = ops._product


def separate(lay, transposed, intra, values, x, bias, dst, out, relu=False, scratch="blocks"):
    current(lay, transposed, intra, values, x, bias, dst, out, False, scratch)
    if relu:
        out.relu_()


sparse = g2gnet.build_model("g2g-mixer", 784, 10, seed=0).eval()
dense = g2gnet.build_model("dense", 784, 10, seed=0).eval()
impl = {"dense": current, "separate": separate, "in store": current}
for batch in (32, 64, 256):
    x = torch.randn(batch, 784)
    with torch.inference_mode():
        assert sparse.stacked(x)
        ops._product = separate
        a = sparse(x)
        ops._product = current
        assert torch.equal(a, sparse(x))
        calls = {"dense": lambda: dense(x), "separate": lambda: sparse(x), "in store": lambda: sparse(x)}
        t = time_interleaved(calls, 25, warmup=3, per_repeat=max(1, 512 // batch),
                             before=lambda k: setattr(ops, "_product", impl[k]))
    ops._product = current
    r = ratios(t, "separate", "in store")
    print(f"batch {batch}: separate relu_ / in-store {statistics.median(r):.3f} [{min(r):.2f}-{max(r):.2f}]  "
          f"dense/in-store {statistics.median(ratios(t, 'dense', 'in store')):.2f}x", flush=True)
