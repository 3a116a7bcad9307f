"""G2G connectivity in PyTorch's own nn.TransformerEncoder, trained with dynamic sparse training.

Fashion-MNIST images are read as sequences of 28 rows (tokens of 28 pixels); a 2-layer encoder
(width 64, 4 heads, feed-forward 256) classifies them. ``g2gnet.sparsify`` turns the feed-forward
layers into G2G layers (8 ensembles, p' = 0.15; attention stays dense: its out_proj is read by
nn.MultiheadAttention directly), and DynamicSparsity rewires them with the Hebbian rule. Prints
the model summary and the test accuracy of the dense and the G2G + DST model, and writes them to
the JSON file given:

    python examples/sparsify_transformer.py [--epochs 3] [--json results/examples/transformer.json]
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
from g2gnet.convert import summary
from g2gnet.data import Batches, load_dataset
from g2gnet.dst import DynamicSparsity
from g2gnet.optim import adam
from g2gnet.runs import environment
from g2gnet.train import evaluate


class RowTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(28, 64)
        self.pos = nn.Parameter(torch.zeros(1, 28, 64))
        layer = nn.TransformerEncoderLayer(64, 4, dim_feedforward=256, batch_first=True, dropout=0.0)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(x.view(-1, 28, 28)) + self.pos)
        return self.head(h.mean(1))


def run(sparse: bool, epochs: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = RowTransformer()
    if sparse:
        g2gnet.sparsify(model, include=["encoder.layers.*.linear*"], seed=seed)
    opt = adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    ds = load_dataset("fashion-mnist")
    steps = epochs * -(-len(ds.train_y) // 128)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    dst = DynamicSparsity(model, opt, prune="magnitude", grow="hebbian", interval=200, fraction=0.1,
                          total_steps=steps, seed=seed) if sparse else None
    t0 = time.perf_counter()
    for epoch in range(epochs):
        gen = torch.Generator().manual_seed(seed * 1000 + epoch)
        for x, y in Batches(ds.train_x, ds.train_y, 128, ds.mean, ds.std, shuffle=True, generator=gen):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if dst is not None:
                dst.step()
    test = evaluate(model, Batches(ds.test_x, ds.test_y, 1000, ds.mean, ds.std, shuffle=False, generator=None))
    return {"sparse": sparse, "test_acc": test["acc"], "seconds": time.perf_counter() - t0,
            "parameters": sum(p.numel() for p in model.parameters()), "summary": summary(model)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results = [run(sparse, args.epochs, args.seed) for sparse in (False, True)]
    for r in results:
        print(r["summary"])
        print(f"{'G2G + DST' if r['sparse'] else 'dense'}: test accuracy {100 * r['test_acc']:.2f}% "
              f"after {args.epochs} epochs ({r['seconds']:.0f} s)\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "machine": environment("cpu"), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
