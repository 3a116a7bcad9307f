"""Inference above 16 rows: the eager no-grad path (``ops.linear_nograd``, what a layer runs now)
against the custom op (``ops.linear``), both against nn.Linear, 25 interleaved repeats after 5
warm-up calls: python benchmarks/nograd_ab.py WIDTH BATCH"""
import statistics
import sys

import torch

from g2gnet import malloc
from g2gnet.bench import sparse_layer
from g2gnet.kernels import ops
from g2gnet.timing import ratios, time_interleaved

malloc.keep_defaults()  # dense as plain PyTorch runs it: no g2gnet allocator setting (g2gnet.malloc)
torch.set_num_threads(2)
N, B = int(sys.argv[1]), int(sys.argv[2])
sp, de = sparse_layer(N).eval(), torch.nn.Linear(N, N).eval()
tensors, ints = sp.packed.op_args()
x = torch.randn(B, N)
with torch.inference_mode():
    calls = {"dense": lambda: de(x), "old": lambda: ops.linear(x, sp.intra, sp.values, sp.bias, tensors, ints),
             "new": lambda: sp(x)}
    assert sp.execution_path(x) == "native"
    assert torch.allclose(calls["old"](), calls["new"](), atol=1e-5)
    t = time_interleaved(calls, 25, warmup=5)
    print(N, B, "  ".join(f"{k} {statistics.median(t[k]):.3f} ms ({statistics.median(ratios(t, 'dense', k)):.2f}x)"
                          for k in ("old", "new")))
