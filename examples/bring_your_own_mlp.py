"""G2G connectivity in a model g2gnet did not build, the way a user brings one: an MLP whose GELU
is called in ``forward()``, trained with AdamW and the paper's Hebbian DST on Fashion-MNIST.

It shows the calls a user needs around ``sparsify``: its plan (which linears it replaces and
why it keeps the others), ``post_activation=`` for an activation applied in ``forward()`` (else
the Hebbian rule would read the raw output, and DST says so), ``param_groups`` (weight decay on
the 1-D sparse ``values`` too), ``active_parameters`` (what is active, not what is stored), which
ensembles survive DST (``ensemble_fill``, drawn to a PNG), and ``densify`` back to ``nn.Linear``
with the same outputs. Writes the figures it prints to the JSON file given:

    python examples/bring_your_own_mlp.py [--epochs 2] [--json results/examples/byo_mlp.json] [--plot DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import g2gnet
from g2gnet.convert import explain, plan
from g2gnet.data import Batches, load_dataset
from g2gnet.dst import DynamicSparsity
from g2gnet.runs import environment
from g2gnet.train import evaluate


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(784, 512), nn.Linear(512, 512), nn.Linear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.head(F.gelu(self.fc2(F.gelu(self.fc1(x)))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--plot", type=Path, default=None, help="write ensemble_fill.png here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    model = MLP()
    print(explain(plan(model)))  # fc1, fc2 replaced; head kept (final classifier)
    g2gnet.sparsify(model, grouping="mixer", post_activation=F.gelu, seed=args.seed)
    opt = torch.optim.AdamW(g2gnet.param_groups(model, weight_decay=1e-4), lr=1e-3)
    ds = load_dataset("fashion-mnist")
    steps = args.epochs * -(-len(ds.train_y) // 128)
    dst = DynamicSparsity(model, opt, prune="magnitude", grow="hebbian", interval=200, fraction=0.1,
                          total_steps=steps, seed=args.seed)
    active = g2gnet.active_parameters(model)
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        gen = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        for x, y in Batches(ds.train_x, ds.train_y, 128, ds.mean, ds.std, shuffle=True, generator=gen):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            dst.step()
    test = evaluate(model, Batches(ds.test_x, ds.test_y, 1000, ds.mean, ds.std, shuffle=False, generator=None))
    fills = {name: layer.ensemble_fill() for name, layer in g2gnet.sparse_layers(model)}
    own = {name: round(float(f.diagonal().mean()), 4) for name, f in fills.items()}
    print(f"test accuracy {100 * test['acc']:.2f}% after {args.epochs} epochs ({time.perf_counter() - t0:.0f} s); "
          f"{active:,} active parameters ({g2gnet.active_parameters(model):,} after DST; "
          f"{sum(p.numel() for p in model.parameters()):,} stored); own-ensemble fill after DST: {own}")
    if args.plot:
        from g2gnet.report.plots import ensemble_fill

        args.plot.mkdir(parents=True, exist_ok=True)
        ensemble_fill(fills, args.plot / "ensemble_fill.png", f"MLP with G2G layers after {args.epochs} epochs of DST")
    x = torch.randn(4, 784)
    model.eval()
    with torch.no_grad():
        before = model(x)
        g2gnet.densify(model)  # back to nn.Linear: the same function
        same = float((model(x) - before).abs().max())
    print(f"densified: {type(model.fc1).__name__}, max |difference| {same:.1e}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "args": {k: str(v) for k, v in vars(args).items()}, "machine": environment("cpu"),
            "test_acc": test["acc"], "active_params": active, "own_ensemble_fill": own,
            "densify_max_difference": same}, indent=2) + "\n")


if __name__ == "__main__":
    main()
