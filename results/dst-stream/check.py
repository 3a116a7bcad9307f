import warnings, torch
torch.set_num_threads(1); warnings.simplefilter("ignore")
from g2gnet.dst import DynamicSparsity
from g2gnet.models import build_model
from g2gnet.optim import adam
def share(name, seed, old_stream, prune, grow, hidden=256, groups=8):
    m = build_model(name, 784, 10, hidden=[hidden, hidden], groups=groups, seed=seed)
    l = m.blocks[1].linear if name != "er" else m.blocks[1].linear
    same = (l.out_groups[:, None] == l.in_groups[None, :]) if l.out_groups is not None and l.out_groups.numel() else None
    dst = DynamicSparsity(m, adam(m.parameters(), lr=1e-3), prune=prune, grow=grow, interval=1, fraction=0.1, seed=seed)
    if old_stream: dst.generator.manual_seed(seed)
    old = [b.linear.mask.clone() for b in m.blocks]
    # no training: gradient/hebbian need evidence; use random/magnitude only
    dst.step()
    out = []
    for b, o in zip(m.blocks, old):
        new = b.linear.mask; pruned, grown = o & ~new, new & ~o
        lay = b.linear
        s = (lay.out_groups[:, None] == lay.in_groups[None, :])
        out.append((float((pruned & s).sum() / pruned.sum()), float((o & s).sum() / o.sum()),
                    float((grown & s).sum() / max(1, grown.sum())), float((~o & s).sum() / (~o).sum())))
    return torch.tensor(out)
for name in ("g2g-mixer", "g2g-index"):
  for prune, grow in (("random", "random"), ("magnitude", "random")):
    for old in (True, False):
        r = torch.stack([share(name, s, old, prune, grow) for s in range(6)]).mean(0)
        print(name, prune, grow, "old stream" if old else "new stream", " | ".join(
            f"L{i}: intra of pruned {x[0]:.3f} (active {x[1]:.3f}), of grown {x[2]:.3f} (inactive {x[3]:.3f})" for i, x in enumerate(r)))
