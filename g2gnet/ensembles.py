"""Ensembles read back from a mask: ``find_groups`` recovers the partition a G2G mask was drawn
from, and ``ensemble_fill`` says how full every ensemble pair's block is (after DST: which
ensembles survive).

``find_groups`` fits the two-density block model of SPEC §2 (each connection active with one
probability inside an ensemble and another between ensembles) for every number of ensembles G
that divides both widths: outputs are clustered by their input patterns (spherical k-means,
deterministic seeds), then output and input groups are refined in turn, each unit joining the
group whose block it fills most, with every group kept at n / G units; where an ensemble is a few
tile rows, an exact search for a partition with full blocks comes first. Of the partitions whose
blocks are at least half full and clearly denser than the rest, the answer is one with full
blocks if there is one (a G2G layer's ensembles are full), and the one that explains the mask best:
the largest gain in log-likelihood over a single density, less the cost of naming each unit's
group (a description-length criterion, so that noise never pays). Labels, order and interleaving do
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
_MAX_CLASSES = 4  # the exact search runs when an ensemble is at most this many tile rows (or columns) ...
_SEARCH_NODES = 20_000  # ... and gives up after this many steps (then k-means decides)


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


def _classes(m: Tensor) -> tuple[Tensor, Tensor]:
    """(class id of every row [n], rows per class [c]): rows with the same pattern share a class
    (a tile row of a tiled mask)."""
    _, ids, sizes = torch.unique(m, dim=0, return_inverse=True, return_counts=True)
    return ids, sizes


def _full_blocks(m: Tensor, g: int) -> tuple[Tensor, Tensor] | None:
    """(out ids, in ids) of a partition into g groups whose diagonal blocks are all ones, found by
    an exact search over tile rows and tile columns (classes of identical rows / columns), or None
    (no such partition, or the search is too large: ensembles of many classes on both sides, a
    budget spent).

    Why: with inter tiles of half an ensemble, k-means starts from tile rows that link to another
    ensemble as often as to their own, and the refinement keeps ties it cannot break (10 of 32
    masks missed). Where an ensemble is a few tile rows, the partitions with full blocks can be
    enumerated instead: a group is a set of row classes and column classes whose block is all
    ones, of exactly n / G units on each side; its first row class is the unplaced one with the
    fewest candidate columns (the most constrained). Every partition with full blocks explains
    the mask equally well (same fills), and at least as well as any other of this G."""
    row_ids, row_sizes = _classes(m)
    col_ids, col_sizes = _classes(m.T)
    if len(col_sizes) > len(row_sizes):  # the search enumerates sets of columns: the side of fewer classes
        found = _full_blocks(m.T, g)
        return None if found is None else (found[1], found[0])
    if len(col_sizes) > _MAX_CLASSES * g:
        return None
    n_out, n_in = m.shape
    s_out, s_in = n_out // g, n_in // g
    # One member of each class stands for it (its members are identical).
    row_of = torch.empty(len(row_sizes), dtype=torch.long).scatter_(0, row_ids, torch.arange(n_out))
    col_of = torch.empty(len(col_sizes), dtype=torch.long).scatter_(0, col_ids, torch.arange(n_in))
    ones = m[row_of][:, col_of].bool().tolist()  # [row class][col class]
    rs, cs = row_sizes.tolist(), col_sizes.tolist()
    nodes = 0

    def subsets(items: list[int], sizes: list[int], total: int):
        """Subsets of items whose sizes sum to total. Every step counts against the search's budget,
        and a branch whose remaining items cannot reach the total is cut: without both, a total
        out of reach (fewer fitting rows than a group needs) enumerated every subset of the
        candidates first (a 16 x 156 random mask took minutes)."""
        left = [0] * (len(items) + 1)  # left[i]: the sizes of items[i:] summed
        for i in range(len(items) - 1, -1, -1):
            left[i] = left[i + 1] + sizes[items[i]]

        def rec(start: int, total: int):
            nonlocal nodes
            if total == 0:
                yield []
                return
            nodes += 1
            if nodes > _SEARCH_NODES:
                return
            for i in range(start, len(items)):
                if left[i] < total:  # items[i:] cannot reach it (nor, at i = start, can this branch)
                    return
                if sizes[items[i]] <= total:
                    for rest in rec(i + 1, total - sizes[items[i]]):
                        yield [items[i], *rest]

        return rec(0, total)

    def search(rows: set[int], cols: set[int], groups: list[tuple[list[int], list[int]]]) -> list | None:
        nonlocal nodes
        if not rows:
            return groups if not cols else None
        nodes += 1
        if nodes > _SEARCH_NODES:
            return None
        r0 = min(rows, key=lambda r: (sum(ones[r][c] for c in cols), r))
        candidates = sorted(c for c in cols if ones[r0][c])
        for group_cols in subsets(candidates, cs, s_in):
            nodes += 1  # every column set tried counts: a row with many candidates has many
            if nodes > _SEARCH_NODES:
                return None
            fitting = sorted(r for r in rows if r != r0 and all(ones[r][c] for c in group_cols))
            for partners in subsets(fitting, rs, s_out - rs[r0]):
                found = search(rows - {r0, *partners}, cols - set(group_cols),
                               [*groups, ([r0, *partners], group_cols)])
                if found is not None or nodes > _SEARCH_NODES:
                    return found
        return None

    groups = search(set(range(len(rs))), set(range(len(cs))), [])
    if groups is None or len(groups) != g:
        return None
    row_group, col_group = torch.empty(len(rs), dtype=torch.long), torch.empty(len(cs), dtype=torch.long)
    for j, (group_rows, group_cols) in enumerate(groups):
        row_group[group_rows], col_group[group_cols] = j, j
    return row_group[row_ids], col_group[col_ids]


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


def _gain_bound(m: Tensor, g: int) -> float:
    """The largest gain any G-ensemble partition of m can have: as many links as fit inside the
    ensembles' blocks, the rest between them (fills only get less extreme than that)."""
    n_out, n_in = m.shape
    n_intra, total, links = n_out * n_in / g, n_out * n_in, float(m.sum())
    intra = min(links, n_intra)
    ll = -(n_intra * _entropy(intra / n_intra) + (total - n_intra) * _entropy((links - intra) / (total - n_intra)))
    return ll + total * _entropy(links / total) - (n_out + n_in) * math.log(g)


def _fit(m: Tensor, g: int, generator: torch.Generator) -> tuple[float, Tensor, Tensor] | None:
    """(gain, out ids, in ids, intra fill) of the best G-ensemble partition found, if it is valid."""
    exact = _full_blocks(m, g)
    if exact is not None:  # full blocks: nothing of this G explains the mask better
        gain, p_in, p_out = _gain(m, *exact, g)
        return (gain, *exact, p_in) if gain > 0 and p_in - p_out >= MIN_GAP else None
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
            best = (gain, out_ids, in_ids, p_in)
        if best is not None and p_in == 1.0:  # full blocks: no other start can explain them better
            break
    return best


def _entropy(p: float) -> float:
    return 0.0 if p <= 0.0 or p >= 1.0 else -(p * math.log(p) + (1 - p) * math.log(1 - p))


def find_groups(mask: Tensor, max_groups: int = MAX_GROUPS) -> LayerGroups | None:
    """The ensembles of a G2G-structured mask [out, in], found from the mask alone, or None.

    The answer splits both sides into G >= 2 equal groups (G divides both widths, at most
    ``max_groups``) whose diagonal blocks are at least half full and clearly denser than the
    rest; among those, one whose blocks are all full if there is one, and the partition that
    best explains the mask (see the module docstring).
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
        if best is not None and best[3] == 1.0 and _gain_bound(m, g) <= best[0]:
            continue  # cannot beat the best (see below): skip the search
        fit = _fit(m, g, generator)
        # Full blocks first, then the gain: a G2G layer's ensembles are full (p_intra = 1), and with
        # inter tiles as large as an ensemble the tiles that land at random can form a coarser
        # partition with partly full blocks that the gain prefers (g2g-random, tiles 64 of 64).
        if fit is not None and (best is None or (fit[3] == 1.0, fit[0]) > (best[3] == 1.0, best[0])):
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
