"""find_groups on masks with inter tiles of half an ensemble: 512 and 1024 wide, G = 8, p' 0.05 and
0.15, random and interleaved groupings, 4 seeds (32 masks). Prints each miss (the true partition's
gain against the found one's: equal gains are an ambiguity of the mask, not a search failure) and
the count: python benchmarks/find_groups_half_tiles.py"""

import time

import torch

from g2gnet.ensembles import _gain, find_groups
from g2gnet.topology import group_ids, modular_mask


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(a[:, None] == a[None, :], b[:, None] == b[None, :])


found_n = total = 0
t0 = time.time()
for n in (512, 1024):
    for p in (0.05, 0.15):
        for scheme in ("random", "interleaved"):
            for seed in range(4):
                g = torch.Generator().manual_seed(seed)
                og, ig = group_ids(n, 8, scheme, g), group_ids(n, 8, scheme, g)
                m = modular_mask(og, ig, 1.0, p, g, inter_tile=n // 16)
                f = find_groups(m)
                ok = f is not None and same_partition(f.out_groups, og) and same_partition(f.in_groups, ig)
                total += 1
                found_n += ok
                if not ok:
                    true_gain = _gain(m.float(), og, ig, 8)[0]
                    got = None if f is None else _gain(m.float(), f.out_groups, f.in_groups, int(f.out_groups.max()) + 1)[0]
                    print(f"miss n={n} p'={p} {scheme} seed={seed}: true gain {true_gain:.0f}, found {got}", flush=True)
print(f"recovered {found_n}/{total} ({time.time() - t0:.0f}s)")
