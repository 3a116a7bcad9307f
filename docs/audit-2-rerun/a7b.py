import torch, g2gnet
from g2gnet.kernels import dispatch, ops
from g2gnet.topology import group_ids, modular_mask
g = torch.Generator().manual_seed(0)
og, ig = group_ids(1024, 8, "contiguous"), group_ids(1024, 8, "random", g)
l = g2gnet.SparseLinear(1024, 1024, modular_mask(og, ig, 1.0, 0.15, generator=g), in_groups=ig, out_groups=og)
x = torch.randn(0, 1024)
for name, fn in [("native_linear", dispatch.native_linear), ("native_infer (eager)", dispatch.native_infer)]:
    try: print(name, "0 rows ->", tuple(fn(l, x).shape))
    except Exception as e: print(name, "0 rows ->", type(e).__name__, str(e)[:150])
tensors, ints = l.packed.op_args()
for name, op in [("torch.ops.g2gnet.linear_fwd", torch.ops.g2gnet.linear_fwd), ("torch.ops.g2gnet.linear_infer", torch.ops.g2gnet.linear_infer)]:
    try: print(name, "0 rows ->", tuple(op(x, l.intra, l.values, l.bias, tensors, ints).shape))
    except Exception as e: print(name, "0 rows ->", type(e).__name__, str(e)[:150])
