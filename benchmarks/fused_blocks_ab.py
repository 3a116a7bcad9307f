"""Tiled layouts: the diagonal blocks inside the BSR kernel's pass (``ops._product``, this checkout)
against a batched matmul whose result the BSR kernel reads back as its init (the code before), in
one process: a 2048-wide layer with 32 x 32 tiles (perf-tiles' layer), forward + backward at batch
256 and eval() inference under inference_mode at batch 64 and 256, each against nn.Linear, then
the two products alone (forward, input gradient; batch 256), each against one dense matmul;
interleaved repeats, medians [min-max] of per-repeat ratios (dense runs in this process, under
g2gnet's allocator setting, as in perf-tiles: compare split with fused).

    python benchmarks/fused_blocks_ab.py [--width 2048] [--tile 32] [--repeats 21]
"""

import argparse
import statistics

import torch

import g2gnet
from g2gnet import topology
from g2gnet.kernels import ops
from g2gnet.timing import ratios, time_interleaved

parser = argparse.ArgumentParser()
parser.add_argument("--width", type=int, default=2048, help="in and out features")
parser.add_argument("--tile", type=int, default=32, help="inter-group tile size")
parser.add_argument("--repeats", type=int, default=21, help="interleaved repeats")
args = parser.parse_args()
torch.set_num_threads(2)
torch.manual_seed(0)

fused = ops._product


def split(lay, transposed, intra, values, x, bias, dst, out, relu=False):
    """The previous tiled path: blocks by torch.bmm into a workspace, read back by the BSR kernel."""
    ys = None
    if lay.n_groups:
        blocks = ops._masked(intra, lay)
        a, side = (blocks.transpose(1, 2), lay.og) if transposed else (blocks, lay.ig)
        ys = ops._bmm_into("blocks", a, ops._blocks(lay, x, side)).view(out.shape[0], x.shape[1])
    ops._sparse_rows(lay, transposed, values, x, ys, bias, dst, out, relu)


N = args.width
g = torch.Generator().manual_seed(0)
og, ig = topology.group_ids(N, 8, "random", generator=g), topology.group_ids(N, 8, "random", generator=g)
mask = topology.modular_mask(og, ig, 1.0, 0.15, generator=g, inter_tile=args.tile)
sp = g2gnet.SparseLinear(N, N, mask=mask, in_groups=ig, out_groups=og)
de = torch.nn.Linear(N, N)
assert sp.layout.tile == args.tile
x = torch.randn(256, N, requires_grad=True)
gy = torch.randn(256, N)


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


sp.eval()
with torch.inference_mode():
    ref = x.detach() @ (sp.weight * sp.mask).T + sp.bias
    for side in (split, fused):
        ops._product = side
        err = float((sp(x.detach()) - ref).abs().max() / ref.abs().max())
        assert err < 1e-5, err
cases = {"train fwd+bwd b256": step, "infer b256": infer(256), "infer b64": infer(64)}
sides = {"dense": (de, fused), "split": (sp, split), "fused": (sp, fused)}
for name, f in cases.items():
    sp.train(f is step)
    de.train(f is step)
    calls = {side: (lambda m=m: f(m)) for side, (m, _) in sides.items()}
    t = time_interleaved(calls, args.repeats, warmup=3,
                         before=lambda side: setattr(ops, "_product", sides[side][1]))
    r = {"split": ratios(t, "dense", "split"), "fused": ratios(t, "dense", "fused"),
         "split/fused": ratios(t, "split", "fused")}
    print(f"{name:20s} " + "  ".join(f"{k} {statistics.median(v):.3f} [{min(v):.2f}-{max(v):.2f}]"
                                     for k, v in r.items()))
ops._product = fused

# The products alone, on the sorted transposed operands, against one dense matmul x @ W^T.
lay, intra, values = sp.layout, sp.intra.detach(), sp.values.detach()
bp = ops.padded(256)
xs = ops.gather_t(x.detach(), lay.in_perm, bp)
out = torch.empty(N, ops.row_stride(bp))[:, :bp]
w = torch.randn(N, N)
for name, transposed, perm in (("product fwd b256", False, lay.out_perm), ("product T b256", True, lay.in_perm)):
    calls = {"dense": lambda: x.detach() @ w.T,
             "split": lambda: split(lay, transposed, intra, values, xs, None, perm, out),
             "fused": lambda: fused(lay, transposed, intra, values, xs, None, perm, out)}
    t = time_interleaved(calls, args.repeats, warmup=3)
    r = {"split": ratios(t, "split", "dense"), "fused": ratios(t, "fused", "dense"),
         "split/fused": ratios(t, "split", "fused")}
    print(f"{name:20s} " + "  ".join(f"{k} {statistics.median(v):.3f} [{min(v):.2f}-{max(v):.2f}]"
                                     for k, v in r.items()) + "  (split, fused: dense matmuls)")
