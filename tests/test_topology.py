"""Topology: group assignments, masks, densities and the network groupings of SPEC §2."""

import math

import pytest
import torch

from g2gnet import G2GError
from g2gnet.topology import (
    er_mask, expected_density, fit_tile, group_ids, inverse_permutation, modular_mask, network_groups,
)


def test_group_ids_contiguous_and_interleaved_exact():
    assert group_ids(8, 4, "contiguous").tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert group_ids(8, 4, "interleaved").tolist() == [0, 1, 2, 3, 0, 1, 2, 3]


@pytest.mark.parametrize("scheme", ["contiguous", "interleaved", "random"])
def test_group_sizes_equal(scheme):
    g = group_ids(1024, 8, scheme, torch.Generator().manual_seed(3))
    assert torch.bincount(g).tolist() == [128] * 8


def test_random_groups_seeded_and_not_contiguous():
    a = group_ids(64, 4, "random", torch.Generator().manual_seed(1))
    b = group_ids(64, 4, "random", torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert not torch.equal(a, group_ids(64, 4, "contiguous"))


def test_groups_must_divide_width():
    with pytest.raises(G2GError, match="groups=3 does not divide the width 8"):
        group_ids(8, 3, "contiguous")
    with pytest.raises(G2GError, match="valid: contiguous, interleaved, random"):
        group_ids(8, 2, "diagonal")


def test_expected_density_default_is_paper_value():
    assert expected_density(8, 1.0, 0.15) == pytest.approx(0.25625)


def test_modular_mask_intra_dense_and_inter_binomial():
    og = group_ids(1024, 8, "contiguous")
    ig = group_ids(784, 8, "contiguous")
    mask = modular_mask(og, ig, 1.0, 0.15, torch.Generator().manual_seed(0))
    same = og[:, None] == ig[None, :]
    assert mask[same].all()                       # p_intra = 1: every intra link present
    n_inter = int((~same).sum())
    k = int(mask[~same].sum())
    sd = math.sqrt(n_inter * 0.15 * 0.85)
    assert abs(k - 0.15 * n_inter) < 5 * sd       # Bernoulli(0.15): within 5 sigma
    d = mask.float().mean().item()
    assert abs(d - 0.25625) < 5 * math.sqrt(0.25625 * 0.75 / mask.numel()) + 0.01


def test_modular_mask_extremes_and_bad_probability():
    og = ig = group_ids(16, 4, "interleaved")
    same = og[:, None] == ig[None, :]
    assert torch.equal(modular_mask(og, ig, 1.0, 0.0), same)
    assert modular_mask(og, ig, 1.0, 1.0).all()
    with pytest.raises(G2GError, match="p_inter"):
        modular_mask(og, ig, 1.0, 1.5)


def test_tiled_mask_is_block_structured_in_group_order():
    og = group_ids(64, 4, "random", torch.Generator().manual_seed(0))
    ig = group_ids(64, 4, "random", torch.Generator().manual_seed(1))
    mask = modular_mask(og, ig, 1.0, 0.3, torch.Generator().manual_seed(2), inter_tile=4)
    sorted_mask = mask[torch.argsort(og, stable=True)][:, torch.argsort(ig, stable=True)]
    tiles = sorted_mask.reshape(16, 4, 16, 4).permute(0, 2, 1, 3).reshape(16, 16, 16)
    assert torch.all(tiles.all(-1) | ~tiles.any(-1))   # each 4x4 tile is all-on or all-off
    with pytest.raises(G2GError, match="inter_tile=5 does not divide"):
        modular_mask(og, ig, 1.0, 0.3, inter_tile=5)


def test_inverse_permutation_undoes_the_permutation():
    perm = torch.tensor([2, 0, 3, 1])
    inv = inverse_permutation(perm)
    assert inv.tolist() == [1, 3, 0, 2]  # unit 0 stands at position 1 of the order perm lists
    x = torch.arange(10, 14)
    assert torch.equal(x[perm][inv], x) and torch.equal(perm[inv], torch.arange(4))


def test_er_mask_exact_count_and_seeded():
    m = er_mask(100, 30, 0.25625, torch.Generator().manual_seed(0))
    assert m.shape == (100, 30) and m.dtype == torch.bool
    assert int(m.sum()) == round(0.25625 * 3000)
    assert torch.equal(m, er_mask(100, 30, 0.25625, torch.Generator().manual_seed(0)))


def test_index_grouping_aligns_layers():
    layers = network_groups([784, 1024, 1024, 1024], 8, "index")
    for lg in layers:
        assert torch.equal(lg.out_groups, group_ids(lg.out_groups.numel(), 8, "contiguous"))
        assert torch.equal(lg.in_groups, group_ids(lg.in_groups.numel(), 8, "contiguous"))


def test_mixer_alternates_contiguous_interleaved():
    layers = network_groups([784, 1024, 1024, 1024, 1024], 8, "mixer")
    expected = ["contiguous", "interleaved", "contiguous", "interleaved"]
    for lg, scheme in zip(layers, expected):
        assert torch.equal(lg.in_groups, group_ids(lg.in_groups.numel(), 8, scheme))
        assert torch.equal(lg.out_groups, group_ids(lg.out_groups.numel(), 8, scheme))
    # Every ensemble of layer 1's output reaches every ensemble of layer 2's output (mixing):
    l1, l2 = layers[0], layers[1]
    same2 = l2.out_groups[:, None] == l2.in_groups[None, :]          # intra links of layer 2
    reach = torch.zeros(8, 8, dtype=torch.bool)
    for o, i in same2.nonzero().tolist():
        reach[l1.out_groups[i], l2.out_groups[o]] = True
    assert reach.all()


def test_random_grouping_independent_per_layer_side():
    layers = network_groups([64, 64, 64], 4, "random", torch.Generator().manual_seed(0))
    assert not torch.equal(layers[0].out_groups, layers[1].in_groups)
    assert not torch.equal(layers[0].out_groups, layers[0].in_groups)


def test_network_groups_errors_name_layer_and_grouping():
    with pytest.raises(G2GError, match="valid: index, random, mixer"):
        network_groups([8, 8], 2, "checkerboard")
    with pytest.raises(G2GError, match="groups=8 does not divide the output width of sparse layer 1 100"):
        network_groups([784, 100], 8, "index")


def test_rectangular_tiles_and_fit_tile():
    assert [fit_tile(98, t) for t in (16, 32, 7, 1, 200)] == [14, 14, 7, 1, 98]
    og = group_ids(32, 2, "contiguous")
    ig = group_ids(28, 2, "contiguous")
    mask = modular_mask(og, ig, 1.0, 0.5, torch.Generator().manual_seed(0), inter_tile=(8, 7))
    tiles = mask.reshape(4, 8, 4, 7).permute(0, 2, 1, 3).reshape(4, 4, 56)
    assert torch.all(tiles.all(-1) | ~tiles.any(-1))  # each 8x7 tile is all-on or all-off
    on = tiles.all(-1)
    assert on[:2, :2].all() and on[2:, 2:].all()  # intra-group tiles (p_intra 1)
    assert 0 < int(on[:2, 2:].sum() + on[2:, :2].sum()) < 8  # inter tiles drawn, not all equal
    with pytest.raises(G2GError, match="inter_tile=8 does not divide the group size 14.*e.g. 7"):
        modular_mask(og, ig, 1.0, 0.5, inter_tile=8)
    with pytest.raises(G2GError, match="inter_tile must be"):
        modular_mask(og, ig, 1.0, 0.5, inter_tile=(0, 2))


@pytest.mark.parametrize("call, message", [
    (lambda: group_ids(8.0, 2, "contiguous"), r"width must be an integer, got 8.0 \(float\)"),
    (lambda: group_ids("8", 2, "contiguous"), r"width must be an integer, got '8' \(str\)"),
    (lambda: group_ids(8, 2, "random", generator=0), "generator must be a torch.Generator"),
    (lambda: modular_mask([0, 1], [0, 1]), "out_groups must be a 1-D integer tensor of group ids.*got list"),
    (lambda: modular_mask(torch.zeros(2, 2, dtype=torch.long), torch.zeros(4, dtype=torch.long)),
     r"out_groups must be a non-empty 1-D integer tensor of group ids, got \(2, 2\) torch.int64"),
    (lambda: modular_mask(torch.zeros(4, dtype=torch.long), torch.tensor([0.0, 1.0])),
     r"in_groups must be a non-empty 1-D integer tensor of group ids, got \(2,\) torch.float32"),
    (lambda: modular_mask(torch.zeros(0, dtype=torch.long), torch.zeros(4, dtype=torch.long)),
     r"out_groups must be a non-empty .*got \(0,\)"),
    (lambda: modular_mask(group_ids(8, 2, "contiguous"), group_ids(8, 2, "contiguous"), inter_tile=True),
     "inter_tile must be an integer >= 1"),
    (lambda: er_mask(4.5, 4, 0.5), r"out_features must be an integer, got 4.5 \(float\)"),
    (lambda: er_mask(4, "4", 0.5), r"in_features must be an integer, got '4' \(str\)"),
], ids=["group_ids-float-n", "group_ids-str-n", "group_ids-generator", "mask-lists", "mask-2d-ids",
        "mask-float-ids", "mask-empty-ids", "mask-bool-tile", "er-float-size", "er-str-size"])
def test_bad_input_is_one_g2g_error(call, message):
    with pytest.raises(G2GError, match=message) as e:
        call()
    assert "\n" not in str(e.value)
