"""The batched stack (``kernels/chain.py``'s ``StackPlan``) of this checkout against the one of an
earlier revision, in one process: the whole Fashion-MNIST g2g-mixer in inference (eval() under
torch.inference_mode()), or with --step a training step (forward, backward, Adam), both against
the dense MLP, interleaved repeats, medians [min-max] of per-repeat ratios. The revision's ``StackPlan.__call__`` and ``forward`` are loaded from git and
swapped in (they run against this checkout's ops and kernels, so the revision must be one whose
chain.py calls what those still provide).

    python benchmarks/chain_ab.py REV [--batches 32,64,256] [--repeats 25] [--step]
"""

import argparse
import statistics
import subprocess
import types

import torch
import torch.nn.functional as F

import g2gnet
from g2gnet import malloc
from g2gnet.kernels import chain
from g2gnet.optim import adam
from g2gnet.timing import ratios, time_interleaved

parser = argparse.ArgumentParser()
parser.add_argument("rev", help="git revision whose chain.py is the baseline")
parser.add_argument("--batches", default="32,64,256", help="comma-separated batch sizes")
parser.add_argument("--repeats", type=int, default=25, help="interleaved repeats")
parser.add_argument("--step", action="store_true", help="time a training step instead of inference")
args = parser.parse_args()
malloc.keep_defaults()  # dense as plain PyTorch runs it: no g2gnet allocator setting (g2gnet.malloc)
torch.set_num_threads(2)

old = types.ModuleType("g2gnet.kernels.chain_old")
old.__package__ = "g2gnet.kernels"
src = subprocess.run(["git", "show", f"{args.rev}:g2gnet/kernels/chain.py"], check=True, capture_output=True,
                     text=True).stdout
exec(compile(src, f"{args.rev}:chain.py", "exec"), old.__dict__)
METHODS = ("__call__", "forward")
sides = {"old": {k: getattr(old.StackPlan, k) for k in METHODS}, "new": {k: getattr(chain.StackPlan, k) for k in METHODS}}


def use(side: str) -> None:
    for k, f in sides[side].items():
        setattr(chain.StackPlan, k, f)


sparse = g2gnet.build_model("g2g-mixer", 784, 10, seed=0).train(args.step)
dense = g2gnet.build_model("dense", 784, 10, seed=0).train(args.step)
opts = {m: adam(m.parameters(), 1e-3) for m in (sparse, dense)}


def call(model, x: torch.Tensor, y: torch.Tensor) -> None:
    if not args.step:
        with torch.inference_mode():
            model(x)
        return
    opts[model].zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opts[model].step()


def switch(side: str) -> None:
    if side != "dense":
        use(side)


for batch in (int(b) for b in args.batches.split(",")):
    x, y = torch.randn(batch, 784), torch.randint(0, 10, (batch,))
    reps = max(1, 512 // batch)
    with torch.no_grad():
        use("old")
        a = sparse(x)
        use("new")
        assert sparse.stacked(x) and torch.equal(a, sparse(x))

    calls = {"dense": lambda: call(dense, x, y), "old": lambda: call(sparse, x, y), "new": lambda: call(sparse, x, y)}
    times = time_interleaved(calls, args.repeats, warmup=3, per_repeat=reps, before=switch)
    use("new")

    line = f"batch {batch}:"
    for side in ("old", "new"):
        line += f"  dense / {side} {statistics.median(ratios(times, 'dense', side)):.2f}x"
    r = ratios(times, "old", "new")
    print(line + f"  old / new {statistics.median(r):.3f} [{min(r):.2f}-{max(r):.2f}]"
          f"  (new {statistics.median(times['new']) * 1e3:.0f} us)", flush=True)
