"""The one prune-and-regrow step shared by every criterion, and the optimizer-state reset.

Choices that change results, in one place:
- Per layer: each layer swaps its own n connections; there is no global top-k across layers.
- Regrowth is unrestricted: any inactive position can grow, inside or between groups, so DST
  may reinforce or erode the G2G block structure (as in the follow-up code).
- Candidates for growth are the positions inactive *before* the update: a connection pruned now
  is not regrown now, and an active one is never "regrown". If fewer than n positions are
  inactive, only as many are pruned as can be regrown, so density is preserved exactly.
- Ties at the selection boundary (equal scores, e.g. exact-zero weights or dead units) are
  broken uniformly at random with ``generator`` when one is given, else by the lower flat
  index (row-major (out, in)). Both are deterministic; the random one avoids favouring
  low-index units, which in a contiguous grouping means favouring group 0. NaN scores rank
  lowest (a NaN weight is pruned first, a NaN grow score grows last).
- Where it happens: ``DynamicSparsity.step()`` runs after ``optimizer.step()``, so the next
  forward already uses the new mask. Regrown weights start at 0 with zero optimizer state, and
  the state of pruned ones goes with them (``set_mask_moving_state``).
"""

from __future__ import annotations

import torch
from torch import Tensor


def select(scores: Tensor, candidates: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """The k candidates (flat indices) with the highest scores; NaN ranks lowest; ties at the
    boundary are broken with ``generator`` (uniformly) or by the lower index."""
    if k <= 0:
        return candidates[:0]
    if k >= candidates.numel():
        return candidates
    vals = scores[candidates]
    vals = vals.to(torch.promote_types(vals.dtype, torch.float32))  # no float16 ties, no ints
    vals = torch.where(torch.isnan(vals), float("-inf"), vals)
    # Everything above the k-th largest value is taken; the rest comes from the entries equal
    # to it. This is a top-k (not a full sort, which is 10x slower on 1024x1024 layers) and
    # makes ties explicit, whatever order topk returns them in.
    kth = vals.topk(k, sorted=False).values.min()
    above = (vals > kth).nonzero().squeeze(1)
    tied = (vals == kth).nonzero().squeeze(1)  # ascending flat index
    if generator is not None:
        tied = tied[torch.randperm(tied.numel(), generator=generator).to(tied.device)]
    return candidates[torch.cat([above, tied[: k - above.numel()]])]


@torch.no_grad()
def rewire(
    mask: Tensor,
    keep_score: Tensor,
    grow_score: Tensor,
    n: int,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Prune the n active entries with the lowest ``keep_score``; grow n inactive ones with the
    highest ``grow_score``.

    Args:
        mask: BoolTensor[out, in], the current mask (not modified).
        keep_score, grow_score: [out, in] scores, higher = keep / grow.
        n: connections to swap; capped by the active and the inactive count.
        generator: CPU generator for random tie-breaking (see the module docstring).

    Returns:
        (new_mask, pruned, grown), all BoolTensor[out, in]; pruned and grown are disjoint,
        pruned ⊆ mask, grown ∩ mask = ∅, and new_mask has as many entries as mask.
    """
    flat = mask.reshape(-1)
    active = flat.nonzero().squeeze(1)
    inactive = (~flat).nonzero().squeeze(1)
    k = max(0, min(int(n), active.numel(), inactive.numel()))
    # Lowest keep score = highest negated score. NaN first becomes -inf, so that negated it is
    # +inf: a NaN weight is the first to go.
    keep = keep_score.reshape(-1)
    keep = keep.to(torch.promote_types(keep.dtype, torch.float32))
    drop = select(-torch.where(torch.isnan(keep), float("-inf"), keep), active, k, generator)
    grow = select(grow_score.reshape(-1), inactive, k, generator)
    pruned = torch.zeros_like(flat)
    pruned[drop] = True
    grown = torch.zeros_like(flat)
    grown[grow] = True
    new_mask = (flat & ~pruned) | grown
    return new_mask.view_as(mask), pruned.view_as(mask), grown.view_as(mask)


@torch.no_grad()
def set_mask_moving_state(layer, mask: Tensor, optimizer: torch.optim.Optimizer | None, changed: Tensor) -> None:
    """``layer.set_mask_(mask)``, with the optimizer's per-connection state moved to the new
    layout: kept where a connection stays active, zero where one was pruned or grown (RigL).

    Every state tensor shaped like ``layer.intra`` or ``layer.values`` moves: Adam/AdamW
    ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``, SGD ``momentum_buffer`` and the like; scalar
    state (Adam's ``step``) stays.
    """
    params = (layer.intra, layer.values)
    states = [optimizer.state.get(p, {}) if optimizer is not None else {} for p in params]
    keys = {k for s, p in zip(states, params) for k, v in s.items() if torch.is_tensor(v) and v.shape == p.shape
            and v.dim() > 0}
    dense = {}
    for key in keys:
        parts = [s[key] if torch.is_tensor(s.get(key)) and s[key].shape == p.shape else torch.zeros_like(p)
                 for s, p in zip(states, params)]
        dense[key] = layer.packed.dense(*parts)
    layer.set_mask_(mask)
    for key, d in dense.items():
        d.masked_fill_(changed.to(d.device), 0)
        for s, new in zip(states, layer.packed.from_dense(d)):
            if key in s:
                s[key] = new
