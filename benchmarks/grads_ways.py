"""The shared body of the backward A/Bs (``grads_ab.py``, ``kept_pattern_ab.py``): ways of running
``ops._grads_into`` timed against each other, interleaved in one process (``g2gnet.timing``), on the
gradients' products alone at the given batch, a layer's forward + backward and (``model``) an Adam
step of the whole ``g2g-mixer`` 784-W x 3-10. The last way is the package's own; it is restored after."""

from collections.abc import Callable

import torch

import g2gnet
from g2gnet.bench import sparse_layer
from g2gnet.kernels import ops
from g2gnet.timing import compare, time_interleaved


def compare_ways(ways: dict[str, Callable], width: int, batch: int, repeats: int, model: bool,
                 products: str) -> None:
    """Print one A/B line per level; ``products`` names the first level's line. The ways' results on
    the products must agree."""
    names = list(ways)

    def use(name: str) -> None:
        ops._grads_into = ways[name]

    torch.manual_seed(0)
    layer = sparse_layer(width)
    lay, intra, values = layer.layout, layer.intra.detach(), layer.values.detach()
    bp = ops.padded(batch)
    xs = ops.gather_t(torch.randn(batch, width), lay.in_perm, bp)
    gys = ops.gather_t(torch.randn(batch, width), lay.out_perm, bp)
    outs = {n: (torch.empty(width, ops.row_stride(bp))[:, :bp], torch.empty(lay.intra_shape), torch.empty(values.numel()))
            for n in names}
    calls = {n: (lambda n=n: ways[n](lay, intra, values, gys, xs, lay.in_perm, *outs[n], torch.get_num_threads()))
             for n in names}
    times = time_interleaved(calls, repeats, warmup=2)
    for n in names[1:]:
        for k in range(3):
            torch.testing.assert_close(outs[names[0]][k], outs[n][k], rtol=1e-4, atol=1e-4)
    print(compare(f"{width} wide, {products}", times), flush=True)

    x = torch.randn(batch, width, requires_grad=True)

    def step() -> None:
        x.grad = None
        layer.zero_grad(set_to_none=True)
        layer(x).sum().backward()

    times = time_interleaved({n: step for n in names}, repeats, warmup=2, before=use)
    print(compare(f"{width} wide, layer forward + backward", times), flush=True)

    if model:
        net = g2gnet.build_model("g2g-mixer", 784, 10, hidden=[width] * 3, seed=0)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        xb, yb = torch.randn(batch, 784), torch.randint(0, 10, (batch,))

        def train_step() -> None:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(xb), yb).backward()
            opt.step()

        times = time_interleaved({n: train_step for n in names}, repeats, warmup=2, before=use)
        print(compare(f"784-{width}x3-10 g2g-mixer, Adam step", times), flush=True)
    use(names[-1])
