"""Element-wise layouts: the backward's two inter-part products in one pass over the transposed
pattern (``ops._grads_into``, ``g2g_csr_grads``: each output-gradient row read once for both) against
the two apart (the transposed CSR product, then the SDDMM over the untransposed pattern: the code
before), in one process, on this build's kernels.

Per width: the two products alone at batch 256 (with the transposition each needs), then a layer's
forward + backward, then (``--model``) a training step (forward, backward, Adam) of the whole
``g2g-mixer`` 784-W x 3-10 on the native stack. Medians [min-max] of per-repeat ratios
(``g2gnet.timing``; "apart / one pass" > 1: one pass is faster).

    python benchmarks/grads_ab.py [--widths 1024,2048,4096] [--repeats 21] [--model]
"""

import argparse

import torch

import g2gnet
from g2gnet import malloc
from g2gnet.bench import sparse_layer
from g2gnet.kernels import ops
from g2gnet.timing import compare, time_interleaved

parser = argparse.ArgumentParser()
parser.add_argument("--widths", default="1024,2048,4096", help="layer widths, comma-separated")
parser.add_argument("--batch", type=int, default=256, help="batch size")
parser.add_argument("--repeats", type=int, default=21, help="interleaved repeats")
parser.add_argument("--model", action="store_true", help="also time the whole model's training step")
args = parser.parse_args()
malloc.keep_defaults()
torch.set_num_threads(2)
one_pass = ops._grads_into


def apart(lay, intra, values, gys, xs, dst, gxs, gi, gv, nt):
    """The code before: the weight gradients (SDDMM), then the transposed product, each as
    ``_grads_into`` runs it when asked for it alone."""
    one_pass(lay, intra, values, gys, xs, dst, None, gi, gv, nt)
    one_pass(lay, intra, values, gys, xs, dst, gxs, None, None, nt)


WAYS = {"apart": apart, "one pass": one_pass}


def use(name: str) -> None:
    ops._grads_into = WAYS[name]


for width in (int(w) for w in args.widths.split(",")):
    torch.manual_seed(0)
    layer = sparse_layer(width)
    lay, intra, values = layer.layout, layer.intra.detach(), layer.values.detach()
    bp = ops.padded(args.batch)
    xs = ops.gather_t(torch.randn(args.batch, width), lay.in_perm, bp)
    gys = ops.gather_t(torch.randn(args.batch, width), lay.out_perm, bp)
    outs = {n: (torch.empty(width, ops.row_stride(bp))[:, :bp], torch.empty(lay.intra_shape), torch.empty(values.numel()))
            for n in WAYS}
    calls = {n: (lambda n=n: WAYS[n](lay, intra, values, gys, xs, lay.in_perm, *outs[n], torch.get_num_threads()))
             for n in WAYS}
    times = time_interleaved(calls, args.repeats, warmup=2)
    for k in range(3):
        torch.testing.assert_close(outs["apart"][k], outs["one pass"][k], rtol=1e-4, atol=1e-4)
    print(compare(f"{width} wide, the two products", times), flush=True)

    x = torch.randn(args.batch, width, requires_grad=True)

    def step() -> None:
        x.grad = None
        layer.zero_grad(set_to_none=True)
        layer(x).sum().backward()

    times = time_interleaved({n: step for n in WAYS}, args.repeats, warmup=2, before=use)
    print(compare(f"{width} wide, layer forward + backward", times), flush=True)

    if args.model:
        model = g2gnet.build_model("g2g-mixer", 784, 10, hidden=[width] * 3, seed=0)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        xb, yb = torch.randn(args.batch, 784), torch.randint(0, 10, (args.batch,))

        def train_step() -> None:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()

        times = time_interleaved({n: train_step for n in WAYS}, args.repeats, warmup=2, before=use)
        print(compare(f"784-{width}x3-10 g2g-mixer, Adam step", times), flush=True)
    use("one pass")
