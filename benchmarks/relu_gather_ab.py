"""The stack backward's ReLU backward applied by the gathers as they copy each gradient (``relu_out``)
against the code before: ``threshold_backward`` into a new tensor, then the plain gather. Both sides
run in one process on the same model; the "separate" side wraps the two gathers so that they do
what the stack did before (the same numbers: asserted). Rows: the pieces at each width (the gradient
of a [batch, width] output, and a [width, Bp] hand-off between layers), then a whole training step
(forward, backward, Adam) of a g2g-mixer 784-width x3-10; interleaved repeats, medians of
separate / fused [min-max].

    python benchmarks/relu_gather_ab.py [--widths 1024,2048] [--batch 256] [--repeats 21]
"""

import argparse

import torch
import torch.nn.functional as F

import g2gnet
from g2gnet.kernels import native, ops
from g2gnet.timing import compare, time_interleaved

parser = argparse.ArgumentParser()
parser.add_argument("--widths", default="1024,2048", help="comma-separated hidden widths")
parser.add_argument("--batch", type=int, default=256, help="batch size")
parser.add_argument("--repeats", type=int, default=21, help="interleaved repeats")
args = parser.parse_args()
torch.set_num_threads(2)
plain_ops, plain_native = ops.gather_t, native.gather_t


def separate_ops(x, perm, bp, scratch=False, relu_out=None):
    if relu_out is not None:
        x = torch.ops.aten.threshold_backward(x, relu_out, 0)
    return plain_ops(x, perm, bp, scratch)


def separate_native(x, B, sb, si, perm, n, out, ldo, nthreads, relu_out=None):
    if relu_out is not None:
        x = torch.ops.aten.threshold_backward(x, relu_out, 0)
        sb, si = x.stride(1), x.stride(0)
    plain_native(x, B, sb, si, perm, n, out, ldo, nthreads)


def use(name: str) -> None:
    fused = name == "fused"
    ops.gather_t, native.gather_t = (plain_ops, plain_native) if fused else (separate_ops, separate_native)


for width in (int(w) for w in args.widths.split(",")):
    bp = ops.padded(args.batch)
    gy = torch.randn(args.batch, width)
    y = torch.relu(torch.randn(args.batch, width))
    perm = torch.randperm(width)
    gt, yt = ops.gather_t(gy, None, bp), ops.gather_t(y, None, bp)
    out = torch.empty(width, ops.row_stride(bp))
    calls = {"separate": lambda: separate_ops(gy, perm, bp, True, y),
             "fused": lambda: plain_ops(gy, perm, bp, True, y)}
    assert torch.equal(calls["separate"]().clone(), calls["fused"]())
    print(compare(f"width {width}: output gradient gather", time_interleaved(calls, args.repeats, 3, per_repeat=20)))
    calls = {"separate": lambda: separate_native(gt, bp, 1, gt.stride(0), perm, width, out, out.stride(0), 2, yt),
             "fused": lambda: plain_native(gt, bp, 1, gt.stride(0), perm, width, out, out.stride(0), 2, yt)}
    print(compare(f"width {width}: hand-off between layers", time_interleaved(calls, args.repeats, 3, per_repeat=20)))

    model = g2gnet.build_model("g2g-mixer", 784, 10, hidden=(width,) * 3, seed=0).train()
    opt = torch.optim.Adam(model.parameters())
    x, labels = torch.randn(args.batch, 784), torch.randint(0, 10, (args.batch,))
    grads = {}
    for side in ("separate", "fused"):
        use(side)
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), labels).backward()
        grads[side] = [p.grad.clone() for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(grads["separate"], grads["fused"]))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), labels).backward()
        opt.step()

    times = time_interleaved({"separate": step, "fused": step}, args.repeats, 3, per_repeat=5, before=use)
    print(compare(f"width {width}: training step, batch {args.batch}", times), flush=True)
    use("fused")
