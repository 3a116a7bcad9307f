"""The whole Fashion-MNIST g2g-mixer with its hidden blocks stacked (MLP.forward: kernels/chain.py)
against the same blocks called one by one, both against the dense MLP: inference at each batch size,
then (--step) a training step (forward, backward, Adam) at each --step-batches; interleaved repeats
in one process, median of dense time / G2G time per repeat [min-max].

    python benchmarks/stack_ab.py [--batches 1,8,64,256] [--repeats 15] [--step] [--step-batches 256]
"""

import argparse
import statistics

import torch
import torch.nn.functional as F

import g2gnet
from g2gnet import malloc
from g2gnet.timing import ratios, time_interleaved

parser = argparse.ArgumentParser()
parser.add_argument("--batches", default="1,8,64,256", help="comma-separated batch sizes")
parser.add_argument("--repeats", type=int, default=15, help="interleaved repeats")
parser.add_argument("--step", action="store_true", help="also time a training step at --step-batches")
parser.add_argument("--step-batches", default="256", help="comma-separated batch sizes of the training step")
args = parser.parse_args()
malloc.keep_defaults()  # dense as plain PyTorch runs it: no g2gnet allocator setting (g2gnet.malloc)
torch.set_num_threads(2)
torch.manual_seed(0)
sparse = g2gnet.build_model("g2g-mixer", 784, 10, seed=0).eval()
dense = g2gnet.build_model("dense", 784, 10, seed=0).eval()


def one_by_one(x: torch.Tensor) -> torch.Tensor:
    return sparse.head(sparse.blocks(sparse.frontend(x).flatten(1)))


def report(label: str, times: dict[str, list[float]]) -> None:
    line = label
    for name in ("one by one", "stacked"):
        r = ratios(times, "dense", name)
        line += f"  {name} {statistics.median(r):.2f}x [{min(r):.2f}-{max(r):.2f}]"
    r = ratios(times, "one by one", "stacked")
    print(line + f"  one-by-one / stacked {statistics.median(r):.3f} [{min(r):.2f}-{max(r):.2f}]", flush=True)


def interleaved(calls: dict, per_repeat: int) -> dict[str, list[float]]:
    return time_interleaved(calls, args.repeats, warmup=3, per_repeat=per_repeat)


with torch.inference_mode():
    for batch in (int(b) for b in args.batches.split(",")):
        x = torch.randn(batch, 784)
        assert torch.equal(sparse(x), one_by_one(x))
        calls = {"dense": lambda: dense(x), "one by one": lambda: one_by_one(x), "stacked": lambda: sparse(x)}
        report(f"batch {batch} (stacked: {sparse.stacked(x)}):", interleaved(calls, max(1, 256 // batch)))


if args.step:
    sparse.train()
    dense.train()
    opts = {"dense": torch.optim.Adam(dense.parameters()), "sparse": torch.optim.Adam(sparse.parameters())}
    for batch in (int(b) for b in args.step_batches.split(",")):
        x, y = torch.randn(batch, 784), torch.randint(0, 10, (batch,))

        def step(side: str, forward) -> None:
            opts[side].zero_grad(set_to_none=True)
            F.cross_entropy(forward(x), y).backward()
            opts[side].step()

        calls = {"dense": lambda: step("dense", dense), "one by one": lambda: step("sparse", one_by_one),
                 "stacked": lambda: step("sparse", sparse)}
        report(f"training step, batch {batch} (stacked: {sparse.stacked(x)}):",
               interleaved(calls, max(3, 768 // batch)))
