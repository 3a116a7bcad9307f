"""A training step of the Fashion-MNIST g2g-mixer under DST (hebbian:gradient, an update every 1000
steps) with the recorder's hooks registered only while it records (now) against hooks kept for the
whole run (before: the MLP then ran its blocks one by one at every step); batch 256, 2 threads,
9 interleaved rounds of 10 steps, median ms and old / new [min-max].

    python benchmarks/dst_hooks_ab.py
"""

import statistics

import torch
import torch.nn.functional as F

import g2gnet
from g2gnet import malloc
from g2gnet.dst import DynamicSparsity
from g2gnet.timing import ratios, time_interleaved

malloc.keep_defaults()  # as the other benchmarks: glibc's allocator defaults
torch.set_num_threads(2)
sides = {}
for name in ("new", "old"):
    m = g2gnet.build_model("g2g-mixer", 784, 10, seed=0)
    opt = torch.optim.Adam(m.parameters())
    dst = DynamicSparsity(m, opt, prune="hebbian", grow="gradient", interval=1000)
    if name == "old":
        dst.recorder._attach()  # the hooks kept for the whole run, as before
    sides[name] = (m, opt, dst)
x, y = torch.randn(256, 784), torch.randint(0, 10, (256,))


def step(m, opt, dst) -> None:
    # (No dst.step(): it would set the recorder's state, which removes the old side's hooks; these
    # 108 steps are far from the first update, where neither side records.)
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(m(x), y).backward()
    opt.step()


def settle(k: str) -> None:
    """Two untimed steps before each timed block of 10 (the sides' steps run in turn)."""
    for _ in range(2):
        step(*sides[k])


t = time_interleaved({k: (lambda s=s: step(*s)) for k, s in sides.items()}, 9, per_repeat=10, before=settle)
r = ratios(t, "old", "new")
print(f"DST training step, batch 256: hooks only while recording {statistics.median(t['new']):.1f} ms, "
      f"hooks always {statistics.median(t['old']):.1f} ms, old/new {statistics.median(r):.3f} [{min(r):.2f}-{max(r):.2f}]")
