"""SparseLinear against a float64 masked reference; init, state_dict and bad input."""

import pytest
import torch

from g2gnet import G2GError, SparseLinear
from g2gnet.topology import group_ids, modular_mask


def _layer(n_in=24, n_out=16, seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    mask = modular_mask(group_ids(n_out, 4, "contiguous"), group_ids(n_in, 4, "interleaved"), 1.0, 0.3, g)
    return SparseLinear(n_in, n_out, mask, bias=bias, generator=g)


@pytest.mark.parametrize("bias", [True, False])
def test_forward_and_gradients_match_float64_reference(bias):
    layer = _layer(bias=bias)
    x = torch.randn(5, 24, requires_grad=True)
    y = layer(x)
    g_out = torch.randn_like(y)
    y.backward(g_out)

    w64 = layer.weight.detach().double().requires_grad_()
    x64 = x.detach().double().requires_grad_()
    y64 = x64 @ (w64 * layer.mask).T
    if bias:
        y64 = y64 + layer.bias.detach().double()
    y64.backward(g_out.double())
    torch.testing.assert_close(y.double(), y64, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer.packed.dense(layer.intra.grad, layer.values.grad).double(), w64.grad * layer.mask, rtol=1e-5, atol=1e-6)
    assert torch.all(layer.packed.dense(layer.intra.grad, layer.values.grad)[~layer.mask] == 0)


@pytest.mark.parametrize("tile", [1, 4])
def test_init_is_uniform_on_active_links_scaled_by_fan_in(tile):
    g = torch.Generator().manual_seed(0)
    og, ig = group_ids(64, 4, "contiguous"), group_ids(128, 4, "interleaved")
    mask = modular_mask(og, ig, 0.9, 0.3, g, inter_tile=tile)
    layer = SparseLinear(128, 64, mask, in_groups=ig, out_groups=og, generator=g)
    w = layer.weight.detach()
    assert torch.all(w[~mask] == 0) and torch.all(w[mask] != 0)
    # Active entries of row r are U(-b, b) * sqrt(in / fan_in_r), b = 1/sqrt(in) (nn.Linear's bound).
    fan_in = mask.sum(1, keepdim=True).float()
    unscaled = w / torch.sqrt(128 / fan_in)
    bound = 1 / 128**0.5
    assert unscaled.abs().max() <= bound + 1e-7
    active = unscaled[mask]
    assert abs(active.mean().item()) < 0.1 * bound and abs(active.std().item() - bound / 3**0.5) < 0.1 * bound
    assert layer.bias.abs().max() <= bound


def test_inactive_weights_stay_zero_under_adam_with_weight_decay():
    layer = _layer()
    opt = torch.optim.Adam(layer.parameters(), lr=0.1, weight_decay=1e-2)
    for _ in range(5):
        opt.zero_grad()
        layer(torch.randn(8, 24)).square().sum().backward()
        opt.step()
    assert torch.all(layer.weight[~layer.mask] == 0)


def test_state_dict_round_trip_includes_mask_and_groups():
    g = torch.Generator().manual_seed(1)
    og, ig = group_ids(16, 4, "contiguous"), group_ids(24, 4, "interleaved")
    a = SparseLinear(24, 16, modular_mask(og, ig, 1.0, 0.3, g), in_groups=ig, out_groups=og, generator=g)
    b = SparseLinear(24, 16, torch.ones(16, 24, dtype=torch.bool), in_groups=group_ids(24, 4, "contiguous"),
                     out_groups=og)
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.mask, a.mask) and torch.equal(b.weight, a.weight)
    assert torch.equal(b.in_groups, a.in_groups)
    x = torch.randn(3, 24)
    assert torch.equal(a(x), b(x))


def test_set_mask_zeroes_newly_inactive_and_density():
    layer = _layer()
    new = torch.zeros_like(layer.mask)
    new[:, :3] = True
    layer.set_mask_(new)
    assert torch.all(layer.weight[~new] == 0)
    assert layer.density == pytest.approx(3 / 24)


def test_bad_input_errors():
    with pytest.raises(G2GError, match=r"mask must have shape \(16, 24\)"):
        SparseLinear(24, 16, torch.ones(24, 16, dtype=torch.bool))
    with pytest.raises(G2GError, match="bool"):
        SparseLinear(24, 16, torch.ones(16, 24))
    layer = _layer()
    bad = layer.state_dict()
    bad["packed.mask_bits"] = torch.ones(4, 4, dtype=torch.uint8)
    with pytest.raises(G2GError, match="checkpoint packed.mask_bits"):
        layer.load_state_dict(bad)
    bad = layer.state_dict()
    bad["packed.weight_values"] = bad["packed.weight_values"][:-1]
    with pytest.raises(G2GError, match="weight_values"):
        layer.load_state_dict(bad)
    with pytest.raises(G2GError, match="mask must be a bool tensor, got list"):
        SparseLinear(8, 4, [[True] * 8] * 4)
    with pytest.raises(G2GError, match="in_features must be an integer"):
        SparseLinear(8.5, 4)
    with pytest.raises(G2GError, match="in_groups must be an integer tensor"):
        SparseLinear(8, 4, in_groups=torch.zeros(3, dtype=torch.long))


def test_3d_input_and_repr():
    layer = _layer()
    assert layer(torch.randn(2, 3, 24)).shape == (2, 3, 16)
    assert "density=" in repr(layer)
