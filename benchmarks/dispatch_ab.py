"""A/B of the eager inference path's Python (kernels/dispatch.py and kernels/ops.py) of another
commit against this checkout's, in one process, on the whole Fashion-MNIST g2g-mixer at small
batches, where a layer's Python costs as much as a third of its kernel. The other commit's two
files are executed as copies of the modules (its custom-op registrations left out: the eager path
does not use them); both sides call the same compiled kernels. Prints per batch the median time
of each side, each side's speed-up over the dense MLP timed beside it, and old / new per
interleaved repeat, median [min-max].

    python benchmarks/dispatch_ab.py OLD_COMMIT [--batches 1,4,8,16] [--reps 21]
"""

import argparse
import statistics
import subprocess
import sys
import types

import torch

import g2gnet
from g2gnet import malloc
from g2gnet.kernels import dispatch
from g2gnet.layers import SparseLinear
from g2gnet.timing import ratios, time_interleaved

malloc.keep_defaults()  # dense as plain PyTorch runs it: no g2gnet allocator setting (g2gnet.malloc)

parser = argparse.ArgumentParser()
parser.add_argument("commit", help="the commit whose dispatch.py and ops.py are the old side")
parser.add_argument("--batches", default="1,4,8,16", help="comma-separated batch sizes (at most 16: the inference kernel)")
parser.add_argument("--reps", type=int, default=21, help="interleaved repeats")
args = parser.parse_args()
torch.set_num_threads(2)
torch.manual_seed(0)


def old_module(path: str, strip_ops: bool) -> types.ModuleType:
    src = subprocess.run(["git", "show", f"{args.commit}:{path}"], capture_output=True, text=True, check=True).stdout
    if strip_ops:  # the op registrations exist once per process: keep the functions, drop the registering
        src = src.replace("@torch.library.custom_op(", "@(lambda *a, **k: (lambda f: f))(")
        src = "\n".join(line for line in src.splitlines()
                        if not line.startswith(("linear_fwd.register", "linear_bwd.register",
                                                "torch.library.register_autocast", "@linear_")))
    mod = types.ModuleType(f"g2gnet.kernels.old_{path.rsplit('/', 1)[-1][:-3]}")
    mod.__package__ = "g2gnet.kernels"
    sys.modules[mod.__name__] = mod  # (dataclasses look their module up)
    exec(compile(src, f"{args.commit}:{path}", "exec"), mod.__dict__)
    return mod


old_ops = old_module("g2gnet/kernels/ops.py", strip_ops=True)
old_dispatch = old_module("g2gnet/kernels/dispatch.py", strip_ops=False)
old_dispatch.ops = old_ops
sides = {"old": (old_dispatch.choose, old_dispatch.PATHS), "new": (dispatch.choose, dispatch.PATHS)}
model = g2gnet.build_model("g2g-mixer", 784, 10).eval()
dense = g2gnet.build_model("dense", 784, 10).eval()


def use(side: str) -> None:
    dispatch.choose, dispatch.PATHS = sides[side]
    for layer in model.modules():
        if isinstance(layer, SparseLinear):
            layer.packed.infer_plans.clear()  # each side builds its own plans


with torch.inference_mode():
    for batch in (int(b) for b in args.batches.split(",")):
        x = torch.randn(batch, 784)
        reps = 256 // batch
        use("old")
        y_old = model(x)
        use("new")
        assert torch.equal(y_old, model(x)), "the two sides differ"

        def switch(side: str) -> None:
            if side != "dense":
                use(side)
                model(x)  # untimed: builds this side's plans

        ms = time_interleaved({"dense": lambda: dense(x), "old": lambda: model(x), "new": lambda: model(x)}, args.reps,
                              per_repeat=reps, before=switch)
        ts = {side: [t * 1e3 for t in ms[side]] for side in ("old", "new")}
        ratio = {side: ratios(ms, "dense", side) for side in ts}
        r = ratios(ms, "old", "new")
        print(f"batch {batch}: " + ", ".join(f"{s} {statistics.median(ts[s]):.0f} us ({statistics.median(ratio[s]):.2f}x dense)"
                                             for s in ts)
              + f"; old/new {statistics.median(r):.3f} [{min(r):.2f}-{max(r):.2f}]", flush=True)
