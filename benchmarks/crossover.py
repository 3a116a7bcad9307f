"""Where a G2G layer stops being faster than nn.Linear: every execution path of SparseLinear against
nn.Linear of the same shape, over widths and batch sizes, for inference (eval, inference_mode,
forward) and training (forward + backward), and the path the dispatcher chose.

    python benchmarks/crossover.py [--threads 2] [--widths 64,128,...] [--batches 1,8,64,256] [--json FILE]

Each cell: the median over 9 interleaved repeats of (nn.Linear time / path time), every repeat
timing both sides back to back (> 1: the path is faster). Density 0.256 (G = 8, p' = 0.15,
random groupings). The README's crossover sentence comes from this table.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from g2gnet import malloc
from g2gnet.bench import _train_call, sparse_layer
from g2gnet.kernels import dispatch, reference_mode
from g2gnet.runs import environment
from g2gnet.timing import ratios, time_interleaved

malloc.keep_defaults()  # dense as plain PyTorch runs it: no g2gnet allocator setting (g2gnet.malloc)


def ratio(dense, sparse, calls: int, repeats: int = 9) -> float:
    """Median over interleaved repeats of dense time / sparse time."""
    times = time_interleaved({"dense": dense, "sparse": sparse}, repeats, warmup=2, per_repeat=calls)
    return statistics.median(ratios(times, "dense", "sparse"))


def cells(width: int, batch: int) -> dict:
    sp, de = sparse_layer(width), torch.nn.Linear(width, width)
    calls = max(1, min(500, int(2e8 // (width * width * batch))))  # ~0.1 s of dense work per repeat (at most 500 calls)
    out = {"width": width, "batch": batch}
    x = torch.randn(batch, width)
    sp.eval(), de.eval()
    with torch.inference_mode():
        out["infer_chosen"] = sp.execution_path(x)
        out["infer"] = {}
        for name in ("auto", "reference", *dispatch.PATHS):
            if name == "infer" and batch > 16:
                continue
            sp.fast = {"auto": None, "reference": False}.get(name, True)
            if name == "native" and batch <= 16:
                continue  # fast=True takes the inference kernel at small batches
            out["infer"][name] = ratio(lambda: de(x), lambda: sp(x), calls)
        sp.fast = None
    sp.train(), de.train()
    xg = x.clone().requires_grad_()

    def step(m):  # forward + backward of sum(m(x)), as g2g bench times it
        return _train_call(m, xg, lambda y: y.sum().backward(), "forward_backward", opt=None)

    out["train_chosen"] = sp.execution_path(xg)
    out["train"] = {}
    for name in ("auto", "reference", "native"):
        sp.fast = {"auto": None, "reference": False, "native": True}[name]
        with reference_mode() if name == "reference" else torch.enable_grad():
            out["train"][name] = ratio(step(de), step(sp), max(1, calls // 3))
    sp.fast = None
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--widths", default="64,128,256,512,1024,2048,4096")
    p.add_argument("--batches", default="1,8,64,256")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print("| width | batch | inference: chosen | auto | reference | infer | native | training: chosen | auto | "
          "reference | native |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for w in map(int, args.widths.split(",")):
        for b in map(int, args.batches.split(",")):
            c = cells(w, b)
            rows.append(c)
            inf, tr = c["infer"], c["train"]
            f = lambda d, k: f"{d[k]:.2f}x" if k in d else "-"  # noqa: E731
            print(f"| {w} | {b} | {c['infer_chosen']} | {f(inf, 'auto')} | {f(inf, 'reference')} | {f(inf, 'infer')} | "
                  f"{f(inf, 'native')} | {c['train_chosen']} | {f(tr, 'auto')} | {f(tr, 'reference')} | "
                  f"{f(tr, 'native')} |", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": environment("cpu"), "threads": args.threads, "rows": rows},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
