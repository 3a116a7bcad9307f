"""Prune and grow criteria of SPEC §3: small functions ``(layer, ctx) -> Tensor[out, in]``.

One convention for all: a higher score means more worth keeping (prune) or more worth growing
(grow). ``rewire`` then prunes the lowest-scoring active entries and grows the highest-scoring
inactive ones. A criterion only scores; ``rewire`` alone changes the mask (``composite`` reads the
mask to split its budget among the active links, and still returns scores).

Adding a criterion is one function and one registry line. If it needs evidence collected during
training, mark it with ``@needs("activity")`` or ``@needs("gradient")`` so that
``DynamicSparsity`` installs the hooks that collect it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from ..layers import SparseLinear
from .hebbian import ActivityStats
from .rewire import select


@dataclass
class Context:
    """What a criterion may use besides the layer. Built per layer and per update."""

    generator: torch.Generator  # CPU generator owned by DynamicSparsity (checkpointed)
    activity: ActivityStats | None = None
    grad: Tensor | None = None  # dL/d(weight ⊙ mask) summed over the window, [out, in]
    score: str = "cosine"  # Hebbian score kind
    name: str = ""  # layer name, for messages
    n: int = 0  # connections this update swaps (for rules that split their budget)
    _hebbian: Tensor | None = field(default=None, init=False, repr=False)

    def hebbian(self, layer: SparseLinear) -> Tensor:
        """The layer's Hebbian scores, computed once even when prune and grow both use them."""
        if self._hebbian is None:
            device = layer.values.device
            if self.activity is None or self.activity.n == 0:
                warnings.warn(f"DST: no training activity recorded for {self.name!r}; Hebbian scores are 0")
                self._hebbian = torch.zeros(layer.out_features, layer.in_features, device=device)
            else:
                self._hebbian = self.activity.scores(self.score).to(device)
        return self._hebbian


Criterion = Callable[[SparseLinear, Context], Tensor]


def needs(what: str) -> Callable[[Criterion], Criterion]:
    """Declare the training evidence a criterion reads ("activity" or "gradient")."""

    def mark(fn: Criterion) -> Criterion:
        fn.needs = what
        return fn

    return mark


def magnitude(layer: SparseLinear, ctx: Context) -> Tensor:
    """|w| (SET): the smallest active weights are pruned."""
    return layer.weight.detach().abs()


def random(layer: SparseLinear, ctx: Context) -> Tensor:
    """Uniform scores: a uniformly random choice among the candidates (SET growth)."""
    # Drawn on the CPU so that a run rewires identically on any device.
    shape = (layer.out_features, layer.in_features)
    return torch.rand(shape, generator=ctx.generator).to(layer.values.device)


@needs("activity")
def hebbian(layer: SparseLinear, ctx: Context) -> Tensor:
    """Activity similarity of input and output unit (the G2GNet rule): prune low, grow high."""
    return ctx.hebbian(layer)


@needs("gradient")
def gradient(layer: SparseLinear, ctx: Context) -> Tensor:
    """|dL/dW| of the dense weight of the masked product (RigL); non-zero off the mask."""
    if ctx.grad is None:
        warnings.warn(f"DST: no gradient recorded for {ctx.name!r}; gradient scores are all 0")
        return torch.zeros(layer.out_features, layer.in_features, device=layer.values.device)
    return ctx.grad.abs()


@needs("activity")
def composite(layer: SparseLinear, ctx: Context) -> Tensor:
    """The G2GNet follow-up code's "three": the pruning budget n in thirds, taken in sequence by
    smallest magnitude, then uniformly at random, then lowest Hebbian score, each among the
    connections the earlier thirds left. Returns 0 for the n chosen ones, 1 for the other
    active ones, so ``rewire`` prunes exactly them."""
    active = layer.mask.reshape(-1).nonzero().squeeze(1)
    chosen = torch.zeros(active.numel(), dtype=torch.bool, device=active.device)
    third = ctx.n // 3
    for rule, k in ((magnitude, third), (random, third), (hebbian, ctx.n - 2 * third)):
        keep = rule(layer, ctx).reshape(-1)[active].float()
        left = (~chosen).nonzero().squeeze(1)
        chosen[left[select(-keep[left], torch.arange(left.numel(), device=left.device), k, ctx.generator)]] = True
    score = torch.ones(layer.mask.numel(), device=active.device)
    score[active[chosen]] = 0.0
    return score.view_as(layer.mask)


PRUNE: dict[str, Criterion] = {"magnitude": magnitude, "random": random, "hebbian": hebbian,
                               "composite": composite}
GROW: dict[str, Criterion] = {"hebbian": hebbian, "random": random, "gradient": gradient}
