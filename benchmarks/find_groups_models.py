"""find_groups on every layer the models build: g2g-index, g2g-random and g2g-mixer (784-512x3-10,
G = 8, seed 0) with element-wise links and inter tiles of 8, 16, 32 and 64 (a whole ensemble).
Prints each layer not recovered as "tie" (the partition found explains the mask exactly as well as
the true one) or "MISS", and the counts: python benchmarks/find_groups_models.py"""

import torch, g2gnet, time
from g2gnet import build_model
from g2gnet.ensembles import find_groups, _gain
def same(a, b): return torch.equal(a[:, None] == a[None, :], b[:, None] == b[None, :])
ok_n = tie_n = miss_n = 0; t0 = time.time()
for model in ("g2g-index", "g2g-random", "g2g-mixer"):
    for tile in (1, 8, 16, 32, 64):
        m = build_model(model, 784, 10, hidden=[512, 512, 512], seed=0, inter_tile=tile)
        for name, layer in g2gnet.sparse_layers(m):
            f = find_groups(layer.mask)
            ok = f is not None and same(f.out_groups, layer.out_groups) and same(f.in_groups, layer.in_groups)
            mk = layer.mask.float()
            tie = (not ok) and f is not None and abs(_gain(mk, f.out_groups, f.in_groups, int(f.out_groups.max())+1)[0] - _gain(mk, layer.out_groups, layer.in_groups, int(layer.out_groups.max())+1)[0]) < 1e-3
            ok_n += ok; tie_n += tie; miss_n += not ok and not tie
            if not ok: print(model, tile, name, "tie" if tie else "MISS", flush=True)
print(f"recovered {ok_n}, ties {tie_n}, misses {miss_n}, {time.time()-t0:.0f}s")
