"""The fast G2G path (g2gnet.kernels) equals the masked reference in values and gradients."""

from __future__ import annotations

import pytest
import torch

from g2gnet.kernels import dispatch, native, reference_mode
from g2gnet.kernels.plan import build_plan
from g2gnet.layers import SparseLinear
from g2gnet.topology import group_ids, modular_mask

BACKENDS = ["native", "torch"]


def _layer(n_in: int, n_out: int, out_scheme: str = "random", in_scheme: str = "random", *, p_inter=0.15,
           p_intra=1.0, tile=1, bias=True, seed=0, groups=8) -> SparseLinear:
    g = torch.Generator().manual_seed(seed)
    og = group_ids(n_out, groups, out_scheme, g)
    ig = group_ids(n_in, groups, in_scheme, g)
    mask = modular_mask(og, ig, p_intra, p_inter, g, inter_tile=tile)
    layer = SparseLinear(n_in, n_out, mask, bias=bias, in_groups=ig, out_groups=og, generator=g)
    layer.fast = True  # test the fast path even where the automatic choice would not take it
    return layer


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def _run(layer: SparseLinear, x: torch.Tensor, gy: torch.Tensor, reference: bool):
    x = x.detach().clone().requires_grad_(True)
    layer.zero_grad(set_to_none=True)
    if reference:
        with reference_mode():
            y = layer(x)
    else:
        y = layer(x)
    y.backward(gy)
    b = None if layer.bias is None else layer.bias.grad.clone()
    return y.detach(), x.grad.clone(), layer.weight.grad.clone(), b


def _check(layer: SparseLinear, shape: tuple[int, ...], backend: str, monkeypatch, seed: int = 1) -> None:
    if backend == "torch":
        monkeypatch.setenv("G2GNET_NO_NATIVE", "1")
    elif not native.available():
        pytest.skip(f"native kernels unavailable: {native.error()}")
    assert dispatch.choose(layer, torch.zeros(shape)) is not None
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g)
    gy = torch.randn(*shape[:-1], layer.out_features, generator=g)
    fast = _run(layer, x, gy, reference=False)
    ref = _run(layer, x, gy, reference=True)
    for name, a, b in zip(("output", "input grad", "weight grad", "bias grad"), fast, ref):
        if b is None:
            assert a is None
            continue
        assert a.shape == b.shape, name
        assert _rel(a, b) < 1e-5, f"{name}: rel err {_rel(a, b):.2e}"
    assert bool((fast[2][~layer.mask] == 0).all()), "weight grad must be exactly 0 off the mask"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("schemes", [("contiguous", "contiguous"), ("interleaved", "interleaved"),
                                     ("random", "random"), ("contiguous", "interleaved"),
                                     ("random", "contiguous")])
def test_schemes_match_reference(schemes, backend, monkeypatch):
    _check(_layer(128, 96, *schemes), (33, 128), backend, monkeypatch)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch", [1, 7, 33])
def test_odd_batches(batch, backend, monkeypatch):
    _check(_layer(64, 64), (batch, 64), backend, monkeypatch)


@pytest.mark.parametrize("backend", BACKENDS)
def test_3d_input_and_no_bias(backend, monkeypatch):
    _check(_layer(64, 80, bias=False), (3, 5, 64), backend, monkeypatch)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("p_inter", [0.0, 1.0])
def test_extreme_inter_probabilities(p_inter, backend, monkeypatch):
    _check(_layer(64, 64, p_inter=p_inter), (17, 64), backend, monkeypatch)


@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_intra_blocks(backend, monkeypatch):
    _check(_layer(64, 64, "interleaved", "random", p_intra=0.7), (9, 64), backend, monkeypatch)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("tile", [4, 8, 16])
def test_tiled_masks(tile, backend, monkeypatch):
    layer = _layer(256, 128, "random", "interleaved", tile=tile)
    plan = dispatch.cached_plan(layer, torch.device("cpu"))
    assert plan.tiles is not None and plan.tiles.size >= tile
    _check(layer, (21, 256), backend, monkeypatch)


def test_element_wise_mask_is_not_tiled():
    plan = dispatch.cached_plan(_layer(128, 128), torch.device("cpu"))
    assert plan.tiles is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_set_mask_rebuilds_plan(backend, monkeypatch):
    layer = _layer(64, 64)
    plan = dispatch.cached_plan(layer, torch.device("cpu"))
    g = torch.Generator().manual_seed(5)
    new = modular_mask(layer.out_groups, layer.in_groups, 1.0, 0.4, g)
    layer.set_mask_(new)
    with torch.no_grad():  # new connections start at a value, as DST regrowth may do
        layer.weight.add_(0.01 * new)
    assert dispatch.cached_plan(layer, torch.device("cpu")) is not plan
    _check(layer, (12, 64), backend, monkeypatch)


def test_in_place_mask_edit_and_state_dict_rebuild_plan():
    layer = _layer(64, 64)
    plan = dispatch.cached_plan(layer, torch.device("cpu"))
    with torch.no_grad():
        layer.mask[0, :] = False  # bypasses set_mask_: caught by the version counter
        layer.weight.mul_(layer.mask)
    assert dispatch.cached_plan(layer, torch.device("cpu")) is not plan
    other = _layer(64, 64, seed=3)
    stale = dispatch.cached_plan(other, torch.device("cpu"))
    other.load_state_dict(layer.state_dict())
    assert dispatch.cached_plan(other, torch.device("cpu")) is not stale
    assert dispatch.cached_plan(other, torch.device("cpu")).nnz_inter == \
        dispatch.cached_plan(layer, torch.device("cpu")).nnz_inter


def test_fallback_when_compilation_fails(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("G2GNET_CACHE", str(tmp_path))
    native._reset_for_tests()
    try:
        with pytest.warns(RuntimeWarning, match="native CPU kernels unavailable"):
            assert native.get() is None
        assert native.error()
        layer = _layer(64, 64)
        x = torch.randn(5, 64)
        with reference_mode():
            ref = layer(x)
        assert _rel(layer(x), ref) < 1e-5  # pure PyTorch fast path
    finally:
        native._reset_for_tests()


def test_reference_switches(monkeypatch):
    layer = _layer(64, 64)
    x = torch.zeros(4, 64)
    assert dispatch.choose(layer, x) is not None
    layer.fast = False
    assert dispatch.choose(layer, x) is None
    layer.fast = True
    with reference_mode():
        assert dispatch.choose(layer, x) is None
    monkeypatch.setenv("G2GNET_FAST", "0")
    assert dispatch.choose(layer, x) is None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(96, 64), (98, 40)])
def test_masks_without_groups_use_implicit_blocks(shape, backend, monkeypatch):
    from g2gnet.topology import er_mask

    g = torch.Generator().manual_seed(3)
    layer = SparseLinear(shape[0], shape[1], er_mask(shape[1], shape[0], 0.25625, g), generator=g)
    layer.fast = True
    assert dispatch.cached_plan(layer, torch.device("cpu")).groups == (8 if shape == (96, 64) else 2)
    _check(layer, (13, shape[0]), backend, monkeypatch)


def test_automatic_choice():
    plain = SparseLinear(64, 64)  # too small to gain (under the size threshold): reference
    assert dispatch.choose(plain, torch.zeros(256, 1024 // 16)) is None
    from g2gnet.topology import er_mask

    er = SparseLinear(1024, 1024, er_mask(1024, 1024, 0.25625, torch.Generator().manual_seed(0)))
    assert dispatch.choose(er, torch.zeros(256, 1024)) is not None  # sparse enough without groups
    dense_mask = SparseLinear(1024, 1024)
    assert dispatch.choose(dense_mask, torch.zeros(256, 1024)) is None
    layer = _layer(1024, 1024)
    layer.fast = None
    assert dispatch.choose(layer, torch.zeros(256, 1024)) is not None
    assert dispatch.choose(layer, torch.zeros(1, 1024)) is None  # too small to pay off
    dense_ish = _layer(1024, 1024, p_inter=0.8)
    dense_ish.fast = None
    assert dispatch.choose(dense_ish, torch.zeros(256, 1024)) is None


def test_unequal_groups_have_no_plan():
    mask = torch.ones(8, 8, dtype=torch.bool)
    groups = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1])
    assert build_plan(mask, groups, groups) is None


def test_float64_uses_pytorch_ops():
    layer = _layer(64, 64).double()
    x = torch.randn(6, 64, dtype=torch.float64)
    with reference_mode():
        ref = layer(x)
    assert _rel(layer(x), ref) < 1e-12


def test_training_step_keeps_inactive_weights_zero():
    layer = _layer(128, 128)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        layer(torch.randn(16, 128)).relu().sum().backward()
        opt.step()
    assert bool((layer.weight[~layer.mask] == 0).all())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_reference():
    layer = _layer(256, 256, tile=1).cuda()
    x = torch.randn(33, 256, device="cuda")
    gy = torch.randn(33, 256, device="cuda")
    fast = _run(layer, x, gy, reference=False)
    ref = _run(layer, x, gy, reference=True)
    for a, b in zip(fast, ref):
        assert _rel(a, b) < 1e-5
