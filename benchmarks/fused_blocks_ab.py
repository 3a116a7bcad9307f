"""Tiled layouts: the diagonal blocks inside the BSR kernel's pass against a batched matmul whose
result the BSR kernel reads back as its init, in one process, on a 2048-wide layer with 32 x 32
tiles (perf-tiles' layer). Three ways to run a layer's two products: "split" (matmul and read-back
for both), "fused" (blocks in the pass for both), "current" (``ops._product``: fused forward, split
input gradient); all on this build's kernel.

First the products alone at batch 256, two sides interleaved (the input re-gathered, untimed,
before each call, as a layer's step leaves it); then the layer's forward + backward at batch 256
and eval() inference under inference_mode at batch 64 and 256 with each way, against nn.Linear.
Medians [min-max] of per-repeat ratios; with three or more sides the order rotates and reverses
(``g2gnet.timing.time_interleaved``). Dense runs in this process, under g2gnet's allocator setting,
as in perf-tiles: compare the sparse sides with each other.

    python benchmarks/fused_blocks_ab.py [--width 2048] [--tile 32] [--repeats 41]
"""

import argparse
import statistics

import torch

import g2gnet
from g2gnet import topology
from g2gnet.kernels import native, ops
from g2gnet.timing import ratios, time_interleaved

parser = argparse.ArgumentParser()
parser.add_argument("--width", type=int, default=2048, help="in and out features")
parser.add_argument("--tile", type=int, default=32, help="inter-group tile size")
parser.add_argument("--repeats", type=int, default=41, help="interleaved repeats")
args = parser.parse_args()
torch.set_num_threads(2)
torch.manual_seed(0)

current = ops._product


def split(lay, transposed, intra, values, x, bias, dst, out, relu=False, scratch="blocks"):
    """Blocks by torch.bmm into a workspace, read back by the BSR kernel as its init."""
    ys = ops._block_product(lay, ops._seen_blocks(lay, intra, transposed), x, scratch)
    ops._sparse_rows(lay, transposed, values, x, ys, bias, dst, out, relu)


def fused(lay, transposed, intra, values, x, bias, dst, out, relu=False, scratch="blocks"):
    """Blocks inside the BSR pass, both products (the input gradient reads them transposed)."""
    ops._sparse_rows(lay, transposed, values, x, None, bias, dst, out, relu, ops._seen_blocks(lay, intra, transposed))


def summary(r: list[float]) -> str:
    return f"{statistics.median(r):.3f} [{min(r):.2f}-{max(r):.2f}]"


N = args.width
g = torch.Generator().manual_seed(0)
og, ig = topology.group_ids(N, 8, "random", generator=g), topology.group_ids(N, 8, "random", generator=g)
mask = topology.modular_mask(og, ig, 1.0, 0.15, generator=g, inter_tile=args.tile)
sp = g2gnet.SparseLinear(N, N, mask=mask, in_groups=ig, out_groups=og)
de = torch.nn.Linear(N, N)
lay, intra, values = sp.layout, sp.intra.detach(), sp.values.detach()
assert lay.tile == args.tile
x = torch.randn(256, N, requires_grad=True)
gy = torch.randn(256, N)

# The products alone.
bp = ops.padded(256)
xs = ops.gather_t(x.detach(), lay.in_perm, bp)
out = torch.empty(N, ops.row_stride(bp))[:, :bp]


def regather(_side: str) -> None:
    native.gather_t(x.detach(), 256, N, 1, lay.in_perm, N, xs, xs.stride(0), torch.get_num_threads())


for name, transposed, perm in (("product forward", False, lay.out_perm), ("product input grad", True, lay.in_perm)):
    outs = []
    for f in (split, fused):
        f(lay, transposed, intra, values, xs, None, perm, out)
        outs.append(out.clone())
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-4)
    t = time_interleaved({"split": lambda: split(lay, transposed, intra, values, xs, None, perm, out),
                          "fused": lambda: fused(lay, transposed, intra, values, xs, None, perm, out)},
                         args.repeats, warmup=3, before=regather)
    print(f"{name:22s} split {statistics.median(t['split']):.3f} ms  fused {statistics.median(t['fused']):.3f} ms  "
          f"split/fused {summary(ratios(t, 'split', 'fused'))}", flush=True)


# The layer.
def step(m):
    x.grad = None
    m.zero_grad(set_to_none=True)
    m(x).backward(gy)


def infer(batch):
    xb = x.detach()[:batch]

    def run(m):
        with torch.inference_mode():
            m(xb)
    return run


ways = {"split": split, "fused": fused, "current": current}
sides = {"dense": (de, current), **{k: (sp, f) for k, f in ways.items()}}
for name, f in {"train fwd+bwd b256": step, "infer b256": infer(256), "infer b64": infer(64)}.items():
    sp.train(f is step)
    de.train(f is step)
    calls = {side: (lambda m=m: f(m)) for side, (m, _) in sides.items()}
    t = time_interleaved(calls, args.repeats, warmup=3, per_repeat=2,
                         before=lambda side: setattr(ops, "_product", sides[side][1]))
    print(f"{name:22s} " + "  ".join(f"dense/{k} {summary(ratios(t, 'dense', k))}" for k in ways)
          + f"  split/current {summary(ratios(t, 'split', 'current'))}", flush=True)
ops._product = current
