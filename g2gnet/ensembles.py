"""Ensembles read back from a mask: ``find_groups`` recovers the partition a G2G mask was drawn
from, and ``ensemble_fill`` says how full every ensemble pair's block is (after DST: which
ensembles survive).

``find_groups`` fits the two-density block model of SPEC §2 (each connection active with one
probability inside an ensemble and another between ensembles) for every number of ensembles G
that divides both widths: outputs are clustered by their input patterns (spherical k-means,
deterministic seeds), then output and input groups are refined in turn, each unit joining the
group whose block it fills most, with every group kept at n / G units. Of the partitions whose
blocks are at least half full and clearly denser than the rest, the one that explains the mask
best is the answer: the largest gain in log-likelihood over a single density, less the cost of
naming each unit's group (a description-length criterion, so that noise never pays). Labels, order and interleaving do
not matter (index, random, mixer groupings look alike to it); tiled inter links, a thinned
ensemble (after DST) and an Erdős–Rényi mask (no answer: None) are handled by the same fit.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .errors import G2GError
from .topology import LayerGroups

MAX_GROUPS = 64  # the largest G tried
MIN_GROUP = 4  # units per group at least (on both sides)
MIN_FILL = 0.5  # an ensemble's block is at least this full ...
MIN_GAP = 0.2  # ... and this much denser than the links between ensembles
_RESTARTS = 4  # k-means seeds tried per G (ensembles of few tiles have local optima)
_ITERATIONS = 20


def _balanced(scores: Tensor) -> Tensor:
    """Group ids [n] maximising the scores [n, G] greedily with exactly n / G units per group:
    every unit asks for its best open group; an over-asked group keeps the units that would lose
    most elsewhere (best score less the second best open one). Keeping the highest scorers instead
    failed on ties: with inter tiles of half an ensemble, an input can have as many links from
    another ensemble as from its own, and the group kept it and turned away its own members."""
    n, g = scores.shape
    cap = n // g
    ids = scores.argmax(1)
    if bool((torch.bincount(ids, minlength=g) == cap).all()):  # the usual case on a clear partition
        return ids
    ids = torch.full((n,), -1, dtype=torch.long)
    count = torch.zeros(g, dtype=torch.long)
    while bool((ids < 0).any()):
        free = (ids < 0).nonzero().squeeze(1)
        open_scores = scores[free].masked_fill((count >= cap)[None, :], -math.inf)
        top = open_scores.topk(min(2, int((count < cap).sum())), dim=1)
        choice = top.indices[:, 0]
        regret = top.values[:, 0] - top.values[:, 1] if top.values.shape[1] > 1 else top.values[:, 0]
        for j in choice.unique().tolist():
            pick = choice == j
            asked = free[pick]
            room = cap - int(count[j])
            if asked.numel() > room:
                asked = asked[regret[pick].topk(room).indices]
            ids[asked] = j
            count[j] += asked.numel()
    return ids


def _kmeans(rows: Tensor, g: int, generator: torch.Generator) -> Tensor:
    """Cosine scores [n, G] of unit-norm rows against G centroids (k-means++ seeds, Lloyd)."""
    n = rows.shape[0]
    seeds = [int(torch.randint(n, (1,), generator=generator))]
    dist = (1 - rows @ rows[seeds[0]]).clamp_min(0)
    for _ in range(g - 1):
        seeds.append(int(torch.multinomial(dist.square() + 1e-12, 1, generator=generator)))
        dist = torch.minimum(dist, (1 - rows @ rows[seeds[-1]]).clamp_min(0))
    centroids = rows[seeds]
    ids = None
    for _ in range(_ITERATIONS):
        new = (rows @ centroids.T).argmax(1)
        if ids is not None and torch.equal(new, ids):
            break
        ids = new
        sums = torch.zeros_like(centroids).index_add_(0, ids, rows)
        norms = sums.norm(dim=1, keepdim=True)
        centroids = torch.where(norms > 0, sums / norms.clamp_min(1e-12), centroids)  # an empty cluster stays
    return rows @ centroids.T


def _one_hot(ids: Tensor, g: int) -> Tensor:
    return torch.nn.functional.one_hot(ids, g).float()


def _group_sums(ids: Tensor, g: int, m: Tensor) -> Tensor:
    """[G, n_in]: the rows of m summed per group (``one_hot(ids).T @ m`` without the matmul)."""
    return m.new_zeros(g, m.shape[1]).index_add_(0, ids, m)


def _gain(m: Tensor, out_ids: Tensor, in_ids: Tensor, g: int) -> tuple[float, float, float]:
    """(gain, intra fill, inter fill) of a partition: how much better the two-density block model
    explains the mask than one density does (log-likelihood, nats), minus the cost of naming
    every unit's group (log G each), so that a partition fitted to noise does not pay."""
    n_out, n_in = m.shape
    blocks = _group_sums(out_ids, g, m) @ _one_hot(in_ids, g)  # [G, G] links per block
    n_intra, total = n_out * n_in / g, n_out * n_in
    intra, links = float(blocks.diagonal().sum()), float(blocks.sum())
    p_in, p_out = intra / n_intra, (links - intra) / (total - n_intra)
    ll = -(n_intra * _entropy(p_in) + (total - n_intra) * _entropy(p_out))
    return ll + total * _entropy(links / total) - (n_out + n_in) * math.log(g), p_in, p_out


def _fit(m: Tensor, g: int, generator: torch.Generator) -> tuple[float, Tensor, Tensor] | None:
    """(gain, out ids, in ids) of the best G-ensemble partition found, if it is valid."""
    rows = m / m.norm(dim=1, keepdim=True).clamp_min(1e-12)
    best = None
    for restart in range(_RESTARTS):  # each from other k-means seeds; the best fit is kept
        out_ids = _balanced(_kmeans(rows, g, generator))
        in_ids = _balanced(_group_sums(out_ids, g, m).T)  # [in, G]: links from each out group
        if _gain(m, out_ids, in_ids, g)[0] <= 0:  # no structure with G groups (an ER mask, say)
            if restart == 0:
                return None
            continue
        fit = (*_gain(m, out_ids, in_ids, g), out_ids, in_ids)
        for _ in range(_ITERATIONS):  # each side joins the block it fills most, in turn
            new_out = _balanced(m @ _one_hot(in_ids, g))  # [out, G]: links into each in group
            new_in = _balanced(_group_sums(new_out, g, m).T)
            if torch.equal(new_in, in_ids) and torch.equal(new_out, out_ids):
                break
            in_ids, out_ids = new_in, new_out
            step = _gain(m, out_ids, in_ids, g)
            if step[0] > fit[0]:  # the best seen: a step can trade ties for a worse fit
                fit = (*step, out_ids, in_ids)
        gain, p_in, p_out, out_ids, in_ids = fit
        if gain > 0 and p_in >= MIN_FILL and p_in - p_out >= MIN_GAP and (best is None or gain > best[0]):
            best = (gain, out_ids, in_ids)
        if best is not None and p_in == 1.0:  # full blocks: no other start can explain them better
            break
    return best


def _entropy(p: float) -> float:
    return 0.0 if p <= 0.0 or p >= 1.0 else -(p * math.log(p) + (1 - p) * math.log(1 - p))


def find_groups(mask: Tensor, max_groups: int = MAX_GROUPS) -> LayerGroups | None:
    """The ensembles of a G2G-structured mask [out, in], found from the mask alone, or None.

    The answer splits both sides into G >= 2 equal groups (G divides both widths, at most
    ``max_groups``) whose diagonal blocks are at least half full and clearly denser than the
    rest; among those, the partition that best explains the mask (see the module docstring).
    Deterministic: the same mask gives the same ids.
    """
    if not isinstance(mask, Tensor) or mask.dim() != 2 or mask.dtype != torch.bool:
        raise G2GError(f"find_groups needs a bool [out, in] mask, got "
                       f"{f'{mask.dtype} {tuple(mask.shape)}' if isinstance(mask, Tensor) else type(mask).__name__}")
    m = mask.detach().cpu().float()
    n_out, n_in = m.shape
    common = math.gcd(n_out, n_in)
    generator = torch.Generator().manual_seed(0)
    best = None
    for g in range(2, min(max_groups, common) + 1):
        if common % g or min(n_out, n_in) // g < MIN_GROUP:
            continue
        fit = _fit(m, g, generator)
        if fit is not None and (best is None or fit[0] > best[0]):
            best = fit
    return None if best is None else LayerGroups(out_groups=best[1], in_groups=best[2])


def ensemble_fill(mask: Tensor, out_groups: Tensor, in_groups: Tensor) -> Tensor:
    """[G, G] float: the fraction of active links in every (output ensemble, input ensemble)
    block of ``mask``; the diagonal is each ensemble's own block."""
    if mask.dim() != 2 or tuple(mask.shape) != (out_groups.numel(), in_groups.numel()):
        raise G2GError(f"mask {tuple(mask.shape)} does not match {out_groups.numel()} output and "
                       f"{in_groups.numel()} input group ids")
    g = int(max(out_groups.max(), in_groups.max())) + 1
    oh_out, oh_in = _one_hot(out_groups.cpu(), g), _one_hot(in_groups.cpu(), g)
    links = oh_out.T @ mask.detach().cpu().float() @ oh_in
    return links / torch.outer(oh_out.sum(0), oh_in.sum(0)).clamp_min(1)
