"""Ensembles read back from a mask (find_groups), per-ensemble fill after DST, and the counts and
optimizer groups a user sees."""

import pytest
import torch
import torch.nn as nn

import g2gnet
from g2gnet import G2GError, SparseLinear, build_model
from g2gnet.dst import DynamicSparsity
from g2gnet.ensembles import ensemble_fill, find_groups
from g2gnet.topology import er_mask, group_ids, modular_mask


def _same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to relabelling the groups."""
    return torch.equal(a[:, None] == a[None, :], b[:, None] == b[None, :])


@pytest.mark.parametrize("scheme,groups,p_inter,tile", [
    ("contiguous", 4, 0.15, 1), ("interleaved", 8, 0.3, 1), ("random", 8, 0.15, 1), ("random", 16, 0.05, 1),
    ("random", 4, 0.15, 16), ("interleaved", 4, 0.15, 16), ("random", 4, 0.15, 8),
    ("random", 4, 0.15, 32), ("interleaved", 4, 0.15, 32),  # tiles of half an ensemble (see below)
    ("random", 8, 0.15, 16), ("interleaved", 8, 0.15, 16), ("random", 8, 0.05, 16),
])
def test_find_groups_recovers_the_partition_from_the_mask(scheme, groups, p_inter, tile):
    g = torch.Generator().manual_seed(0)
    og, ig = group_ids(256, groups, scheme, g), group_ids(256, groups, scheme, g)
    found = find_groups(modular_mask(og, ig, 1.0, p_inter, g, inter_tile=tile))
    assert found is not None
    assert _same_partition(found.out_groups, og) and _same_partition(found.in_groups, ig)


def test_full_block_search_finds_the_ensembles_of_tile_rows():
    """Two ensembles of two tile rows each (tiles 2 x 2) and one inter tile that links row tile 1
    to column tile 2 as fully as to its own: the exact search places every tile."""
    from g2gnet.ensembles import _full_blocks
    tiles = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.bool)
    order = torch.tensor([2, 0, 3, 1])  # shuffled rows and columns: labels and order do not matter
    m = tiles[order][:, order].repeat_interleave(2, 0).repeat_interleave(2, 1)
    out_ids, in_ids = _full_blocks(m.float(), 2)
    truth = (order >= 2).long().repeat_interleave(2)
    assert _same_partition(out_ids, truth) and _same_partition(in_ids, truth)
    assert _full_blocks(m.float(), 4) is None  # no 4 full 2 x 2 blocks pair up rows and columns


def test_gain_bound_holds_for_every_partition():
    """find_groups skips a G whose bound cannot beat the best fit: the bound must hold."""
    from g2gnet.ensembles import _gain, _gain_bound
    g = torch.Generator().manual_seed(0)
    og, ig = group_ids(128, 4, "random", g), group_ids(128, 4, "random", g)
    m = modular_mask(og, ig, 1.0, 0.1, g).float()
    for groups in (2, 4, 8):
        partitions = [(torch.arange(128) % groups, torch.arange(128) % groups)]
        if groups == 4:
            partitions.append((og, ig))  # the true one: the bound is close to it
        for out_ids, in_ids in partitions:
            assert _gain(m, out_ids, in_ids, groups)[0] <= _gain_bound(m, groups) + 1e-6
    assert _gain_bound(m, 4) - _gain(m, og, ig, 4)[0] < 1e-6 * _gain_bound(m, 4)  # full blocks reach it


def test_balanced_assignment_breaks_ties_by_what_a_unit_loses_elsewhere():
    """Unit 0 scores the same in both groups, units 1 and 2 only in group 0 (two places each):
    the full group keeps 1 and 2, and 0 goes where it loses nothing. Keeping the highest scorers
    (all 1) could turn 2 away to a group where it scores 0."""
    from g2gnet.ensembles import _balanced
    ids = _balanced(torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    assert ids.tolist() == [1, 0, 0, 1]


@pytest.mark.parametrize("tile", [1, 32, 64])
@pytest.mark.parametrize("model", ["g2g-index", "g2g-random", "g2g-mixer"])
def test_find_groups_recovers_every_layer_the_models_build(model, tile):
    """Including the mixer's interleaved middle layer, which the first version missed (its evenly
    spaced sample of columns aliased with k mod 8), and tiles of half and of a whole ensemble (64
    units), where a mask can be ambiguous: then the partition found must have full blocks and
    explain the mask exactly as well as the true one (a layer built from it is as good)."""
    from g2gnet.ensembles import _gain
    m = build_model(model, 784, 10, hidden=[512, 512, 512], seed=0, inter_tile=tile)
    exact = 0
    for _, layer in g2gnet.sparse_layers(m):
        found = find_groups(layer.mask)
        assert found is not None
        if _same_partition(found.out_groups, layer.out_groups) and _same_partition(found.in_groups, layer.in_groups):
            exact += 1
            continue
        assert tile > 1
        g = int(layer.out_groups.max()) + 1
        mask = layer.mask.float()
        gain, fill, _ = _gain(mask, found.out_groups, found.in_groups, int(found.out_groups.max()) + 1)
        assert fill == 1.0 and gain == pytest.approx(_gain(mask, layer.out_groups, layer.in_groups, g)[0])
    assert exact >= 2


def test_find_groups_none_without_ensembles_and_checks_input():
    g = torch.Generator().manual_seed(0)
    assert find_groups(er_mask(256, 256, 0.3, g)) is None
    assert find_groups(er_mask(256, 768, 0.6, g)) is None  # dense enough to fill any block half: still noise
    assert find_groups(torch.ones(256, 256, dtype=torch.bool)) is None
    with pytest.raises(G2GError, match="bool"):
        find_groups(torch.ones(8, 8))


def test_full_block_search_stays_within_its_budget_where_a_group_cannot_fill():
    """A dense random mask of few input classes runs the exact search, whose groups then need more
    fitting rows than there are: enumerating the subsets of the rows that do fit took minutes (a
    layer built from a 156 x 16 mask hung) before every step counted against the budget and a
    branch out of reach was cut."""
    import signal

    def expired(signum, frame):
        raise TimeoutError("find_groups ran past 60 s")

    g = torch.Generator().manual_seed(0)
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(60)
    try:
        for n_out, n_in, p in [(156, 16, 0.7), (154, 28, 0.7), (276, 12, 0.9)]:
            assert find_groups(torch.rand(n_out, n_in, generator=g) < p) is None  # noise: no ensembles
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_a_layer_without_group_ids_stores_the_blocks_it_finds():
    g = torch.Generator().manual_seed(0)
    og, ig = group_ids(256, 8, "interleaved", g), group_ids(256, 8, "interleaved", g)
    layer = SparseLinear(256, 256, modular_mask(og, ig, 1.0, 0.15, g))
    assert layer.packed.blocks and layer.intra.shape == (8, 32, 32)
    assert _same_partition(layer.out_groups, og)


def test_ensemble_fill_hand_checked():
    og, ig = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1, 0, 1])
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[0, [0, 2, 4]] = True   # output 0 (ensemble 0): all of input ensemble 0
    mask[1, [0, 1]] = True      # output 1: one of ensemble 0, one of ensemble 1
    mask[3, [1, 3, 5]] = True   # output 3 (ensemble 1): all of input ensemble 1
    fill = ensemble_fill(mask, og, ig)
    torch.testing.assert_close(fill, torch.tensor([[4 / 6, 1 / 6], [0.0, 3 / 6]]))
    with pytest.raises(G2GError, match="does not match"):
        ensemble_fill(mask, og, ig[:5])


def test_which_ensembles_survive_dst():
    torch.manual_seed(0)
    model = build_model("g2g-index", 64, 4, hidden=[64, 64], groups=4, seed=0)
    layer = model.blocks[1].linear
    assert torch.equal(layer.ensemble_fill().diagonal(), torch.ones(4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    dst = DynamicSparsity(model, opt, prune="random", grow="random", interval=1, fraction=0.5)
    for _ in range(6):
        model(torch.randn(8, 64)).sum().backward()
        opt.step()
        dst.step()
    fill = layer.ensemble_fill()
    own = fill.diagonal().mean()
    assert 0.25 < own < 0.9  # thinned by random rewiring, and still what find_groups reads
    assert float(fill.mean()) == pytest.approx(layer.density, rel=1e-6)  # equal ensembles: the mean fill is the density


def test_counts_users_see_are_active_connections():
    model = build_model("g2g-mixer", 64, 4, hidden=[64, 64], groups=4, seed=0)
    active = g2gnet.active_parameters(model)
    expected = sum(l.nnz for _, l in g2gnet.sparse_layers(model)) + 64 + 64 + 64 * 4 + 4
    assert active == expected
    DynamicSparsity(model, torch.optim.Adam(model.parameters()), prune="magnitude", grow="random")
    assert g2gnet.active_parameters(model) == active  # the reserve is storage, not parameters
    assert sum(p.numel() for p in model.parameters()) > active


def test_param_groups_decay_the_sparse_values():
    model = nn.Sequential(nn.Linear(64, 64), nn.LayerNorm(64), nn.ReLU(), nn.Linear(64, 64), nn.Linear(64, 4))
    g2gnet.sparsify(model, include=["0", "3"])
    decay, no_decay = g2gnet.param_groups(model, weight_decay=0.1)
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert ids(decay["params"]) == ids([model[0].values, model[0].intra, model[3].values, model[3].intra,
                                        model[4].weight])
    assert ids(no_decay["params"]) == ids([model[0].bias, model[1].weight, model[1].bias, model[3].bias,
                                           model[4].bias])
    opt = torch.optim.AdamW(g2gnet.param_groups(model, 0.1), lr=1e-3)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
