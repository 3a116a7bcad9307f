import torch, g2gnet
from g2gnet.topology import group_ids, modular_mask
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
og, ig = group_ids(1024, 8, "contiguous"), group_ids(1024, 8, "random", g)
big = g2gnet.SparseLinear(1024, 1024, modular_mask(og, ig, 1.0, 0.15, generator=g), in_groups=ig, out_groups=og)
for n, fast in [(1, True), (0, None), (1, None), (8, True)]:
    big.fast = fast
    x = torch.randn(n, 1024, requires_grad=True)
    path = big.execution_path(x)
    y = big(x); y.sum().backward()
    with g2gnet.kernels.dispatch.reference_mode():
        x2 = x.detach().clone().requires_grad_(); y2 = big(x2); y2.sum().backward()
    print(f"batch {n} fast={fast} path={path}: shape {tuple(y.shape)}",
          f"|dy| {float((y - y2).abs().max()) if n else 0:.2g} |dx| {float((x.grad - x2.grad).abs().max()) if n else 0:.2g}")
    with torch.no_grad():
        big.eval(); y3 = big(x.detach()); big.train()
    print(f"   eval no_grad: |dy| {float((y3 - y2).abs().max()) if n else 0:.2g}")
