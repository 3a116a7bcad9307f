"""Inference above 16 rows: the eager no-grad path (``ops.linear_nograd``, what a layer runs now)
against the custom op (``ops.linear``), each call right after a dense one, alternating order, 30
pairs (the first 5 dropped): python benchmarks/nograd_ab.py WIDTH BATCH"""
import time, statistics, torch, sys
from g2gnet import malloc
from g2gnet.bench import sparse_layer
from g2gnet.kernels import ops

malloc.keep_defaults()  # dense as plain PyTorch runs it: no g2gnet allocator setting (g2gnet.malloc)
torch.set_num_threads(2)
N = int(sys.argv[1]); B = int(sys.argv[2])
sp = sparse_layer(N).eval(); de = torch.nn.Linear(N, N).eval()
tensors, ints = sp.packed.op_args()
x = torch.randn(B, N)
with torch.inference_mode():
    old = lambda: ops.linear(x, sp.intra, sp.values, sp.bias, tensors, ints)
    new = lambda: sp(x)
    assert sp.execution_path(x) == "native"
    assert torch.allclose(old(), new(), atol=1e-5)
    def timed(f):
        t = time.perf_counter(); f(); return time.perf_counter() - t
    res = {"old": [], "new": [], "d_old": [], "d_new": []}
    for i in range(30):
        for k, f in (("old", old), ("new", new)) if i % 2 else (("new", new), ("old", old)):
            res["d_" + k].append(timed(lambda: de(x)))
            res[k].append(timed(f))
    ro = [d / s for d, s in zip(res["d_old"], res["old"])][5:]; rn = [d / s for d, s in zip(res["d_new"], res["new"])][5:]
    print(N, B, "old", round(statistics.median(res["old"][5:]) * 1e3, 3), "ms", round(statistics.median(ro), 2), "x; new", round(statistics.median(res["new"][5:]) * 1e3, 3), "ms", round(statistics.median(rn), 2), "x")
