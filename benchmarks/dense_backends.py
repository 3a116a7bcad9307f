"""Is nn.Linear a fair dense baseline on this CPU? The dense side of every ``g2g bench`` row is
nn.Linear as PyTorch runs it (its BLAS, usually MKL's sgemm). On some CPUs that BLAS does not use
the widest vectors the CPU has (MKL picks AVX2 code on AMD processors that have AVX-512), and a
speed-up over it overstates what sparsity buys against the best dense product available. This
times, interleaved in one process, the dense 2048 x 2048 layer at batch 256 through the other dense
products PyTorch offers on the CPU, against nn.Linear, and a SparseLinear of the benchmarks'
topology for scale:

- ``nn.Linear``: the baseline (forward; forward + backward);
- ``oneDNN``: ``torch.utils.mkldnn.to_mkldnn`` (inference only), oneDNN's GEMM, which picks its
  kernels by the CPU's instruction sets, whatever the vendor;
- ``compiled``: ``torch.compile`` of the layer (inductor's CPU code), forward and forward + backward;
- ``oneDNN 3 products``: the three products of a training step (forward, input gradient, weight
  gradient) through oneDNN, operands converted beforehand: a lower bound on a dense training step
  that used oneDNN (PyTorch's oneDNN tensors have no autograd);
- ``G2G``: ``g2gnet.bench.sparse_layer`` on its native path.

    python benchmarks/dense_backends.py [--width 2048] [--batch 256] [--threads 2] [--repeats 15]

Each line: the median ms per call and the ratio nn.Linear / it, median (min-max) over repeats;
first the BLAS PyTorch was built with and the CPU's vector extensions.
"""

from __future__ import annotations

import argparse
import re
import statistics

import torch
import torch.utils.mkldnn

from g2gnet import malloc
from g2gnet.bench import _train_call, sparse_layer
from g2gnet.timing import ratios, time_interleaved

malloc.keep_defaults()  # dense as plain PyTorch runs it (g2gnet.malloc)


def _isa() -> str:
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        pass
    have = [x for x in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f" {x}" in flags]
    return ", ".join(have) or "unknown"


def _report(times: dict[str, list[float]], base: str) -> None:
    for name, ts in times.items():
        if name == base:
            print(f"  {name}: {statistics.median(ts):.3f} ms")
            continue
        r = ratios(times, base, name)
        print(f"  {name}: {statistics.median(ts):.3f} ms, nn.Linear / it {statistics.median(r):.2f}x "
              f"({min(r):.2f}-{max(r):.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=2048, help="in = out features of the layer")
    ap.add_argument("--batch", type=int, default=256, help="rows of the input")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--repeats", type=int, default=15, help="interleaved repeats per table")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    blas = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    print(f"torch {torch.__version__}; BLAS {blas.group(1) if blas else 'unknown'}; mkldnn "
          f"{torch.backends.mkldnn.is_available()}; CPU vector extensions: {_isa()}")
    de = torch.nn.Linear(a.width, a.width)
    sp = sparse_layer(a.width)
    x = torch.randn(a.batch, a.width)

    de.eval(), sp.eval()
    onednn = torch.utils.mkldnn.to_mkldnn(torch.nn.Sequential(de)).eval()  # a oneDNN copy of the same layer
    comp_inf = torch.compile(de)
    with torch.inference_mode():
        xm = x.to_mkldnn()
        calls = {"nn.Linear": lambda: de(x), "oneDNN": lambda: onednn(xm),
                 "compiled": lambda: comp_inf(x), "G2G": lambda: sp(x)}
        times = time_interleaved(calls, a.repeats, warmup=3, per_repeat=5)
    print(f"inference, {a.width} x {a.width}, batch {a.batch}, {a.threads} threads:")
    _report(times, "nn.Linear")

    de.train(), sp.train()
    comp = torch.compile(torch.nn.Linear(a.width, a.width))
    xg = x.clone().requires_grad_()

    def step(m):  # forward + backward of sum(m(x)), as g2g bench times it
        return _train_call(m, xg, lambda y: y.sum().backward(), "forward_backward", opt=None)

    lin = torch._C._nn.mkldnn_linear  # a @ b.T on oneDNN tensors
    w = de.weight.detach()
    dy = torch.randn(a.batch, a.width)
    xm, wm, wtm = x.to_mkldnn(), w.to_mkldnn(), w.t().contiguous().to_mkldnn()
    dym, dytm, xtm = dy.to_mkldnn(), dy.t().contiguous().to_mkldnn(), x.t().contiguous().to_mkldnn()

    def onednn_products():
        lin(xm, wm, None), lin(dym, wtm, None), lin(dytm, xtm, None)  # x W^T, dY W, dY^T x

    times = time_interleaved({"nn.Linear": step(de), "compiled": step(comp), "oneDNN 3 products": onednn_products,
                              "G2G": step(sp)}, a.repeats, warmup=3, per_repeat=2)
    print(f"forward + backward, {a.width} x {a.width}, batch {a.batch}, {a.threads} threads:")
    _report(times, "nn.Linear")


if __name__ == "__main__":
    main()
