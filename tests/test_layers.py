"""SparseLinear against a float64 masked reference; init, state_dict and bad input."""

import copy
import io

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
    x = torch.randn(2, 3, 24)
    torch.testing.assert_close(layer(x), layer(x.view(6, 24)).view(2, 3, 16))  # leading dims are samples
    nnz = int(layer.mask.sum())
    assert 0 < nnz < layer.mask.numel()
    head = f"in_features=24, out_features=16, bias=True, density={nnz / 384:.4f}, active={nnz:,}"
    assert repr(layer).startswith(f"SparseLinear(\n  {head}\n")


# -- never silently wrong (reliability-audit-2: R1, A7, A12, E11-E13; issue "inference mode") -----------------

def _g2g(n_in=64, n_out=64, seed=0, **ids):
    g = torch.Generator().manual_seed(seed)
    og, ig = group_ids(n_out, 4, "random", g), group_ids(n_in, 4, "random", g)
    return SparseLinear(n_in, n_out, modular_mask(og, ig, 1.0, 0.15, g), generator=g,
                        **({"in_groups": ig, "out_groups": og} if ids.get("with_ids", True) else {}))


@pytest.mark.parametrize("with_ids", [True, False])
def test_R1_layout_is_saved_and_never_re_decided_on_load(with_ids):
    """After DST has thinned the ensembles' blocks below half, a loaded layer keeps the layout it
    was saved with, so optimizer state (in layout order) stays on its connections."""
    layer = _g2g(with_ids=with_ids)
    assert layer.packed.blocks and layer.intra.shape == (4, 16, 16)
    g = torch.Generator().manual_seed(1)
    same = layer.out_groups[:, None] == layer.in_groups[None, :]
    eroded = layer.mask & ~(same & (torch.rand(64, 64, generator=g) < 0.7))  # blocks ~30% full
    eroded |= ~same & (torch.rand(64, 64, generator=g) < 0.1)
    layer.set_mask_(eroded)
    opt = torch.optim.Adam(layer.parameters())
    layer(torch.randn(8, 64)).square().sum().backward()
    opt.step()
    moments = layer.packed.dense(opt.state[layer.intra]["exp_avg"], opt.state[layer.values]["exp_avg"])
    fresh = _g2g(with_ids=with_ids)  # built from the seed, as a resumed run is
    fresh.load_state_dict(layer.state_dict())
    assert fresh.intra.shape == layer.intra.shape and fresh.values.shape == layer.values.shape
    for name in ("rowptr", "cols", "out_perm", "in_perm", "block_mask"):
        assert torch.equal(getattr(fresh.packed, name), getattr(layer.packed, name)), name
    opt2 = torch.optim.Adam(fresh.parameters())
    opt2.load_state_dict(opt.state_dict())
    moved = fresh.packed.dense(opt2.state[fresh.intra]["exp_avg"], opt2.state[fresh.values]["exp_avg"])
    assert torch.equal(moved, moments) and torch.equal(fresh.weight, layer.weight)


def test_A7_empty_batch_gives_an_empty_result_on_every_path():
    layer = _g2g(256, 256)
    for fast in (True, None, False):
        layer.fast = fast
        x = torch.randn(0, 256, requires_grad=True)
        y = layer(x)
        assert y.shape == (0, 256)
        y.sum().backward()
        assert x.grad.shape == (0, 256)


def test_A12_a_dense_state_dict_loads_onto_the_mask_and_reports_nothing_missing():
    dense = torch.nn.Linear(24, 16)
    layer = _layer()
    result = layer.load_state_dict(dense.state_dict(), strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []
    torch.testing.assert_close(layer.weight, dense.weight.detach() * layer.mask)
    torch.testing.assert_close(layer.bias, dense.bias.detach())
    seq = torch.nn.Sequential(torch.nn.Linear(24, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    sparse = torch.nn.Sequential(_layer(), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    state = {**seq.state_dict(), "0.junk": torch.zeros(1)}
    result = sparse.load_state_dict(state, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == ["0.junk"]
    torch.testing.assert_close(sparse[0].bias, seq[0].bias.detach())


@pytest.mark.parametrize("key, value, pattern", [
    ("packed.mask_bits", 5, "checkpoint packed.mask_bits is 5"),                       # E11
    ("packed.weight_values", "abc", "checkpoint packed.weight_values is 'abc'"),     # E12
    ("packed.mask_bits", torch.zeros(64, 8), "needs (64, 8) torch.uint8"),
    ("packed.blocks", torch.tensor([1, 2]), "checkpoint packed.blocks"),
    ("packed.in_groups", torch.full((64,), 7), "split into"),
])
def test_E11_E12_a_foreign_tensor_in_a_checkpoint_is_one_error(key, value, pattern):
    state = _g2g().state_dict()
    state[key] = value
    fresh = _g2g(seed=3)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(G2GError, match=pattern.replace("(", r"\(").replace(")", r"\)")):
        fresh.load_state_dict(state)
    # The packed weight checks everything before it changes anything.
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in before.items() if k.startswith("packed."))


def test_E13_first_version_state_with_a_wrong_weight_shape_is_one_error():
    layer = _layer()
    old = {"weight": torch.zeros(3), "mask": layer.mask, "bias": layer.bias.detach()}
    with pytest.raises(G2GError, match=r"checkpoint weight is \(3,\)"):
        _layer().load_state_dict(old)
    old = {"weight": layer.weight.detach(), "mask": layer.mask.float(), "bias": layer.bias.detach()}
    with pytest.raises(G2GError, match="checkpoint mask"):
        _layer().load_state_dict(old)


@pytest.mark.parametrize("batch", [1, 64])
def test_first_forward_under_inference_mode_then_train_save_and_load(batch):
    """Caches made during an inference_mode forward (evaluate before training, a sanity check)
    must serve training afterwards."""
    for fast in (None, False):
        model = torch.nn.Sequential(_g2g(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 4))
        model[0].fast = fast
        model.eval()
        with torch.inference_mode():
            before = model(torch.randn(batch, 256))
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(2):
            opt.zero_grad()
            model(torch.randn(batch, 256)).square().mean().backward()
            opt.step()
        state = model.state_dict()
        again = torch.nn.Sequential(_g2g(256, 256, seed=5), torch.nn.ReLU(), torch.nn.Linear(256, 4))
        again.load_state_dict(state)
        x = torch.randn(batch, 256)
        torch.testing.assert_close(again(x), model(x))
        assert before.shape == (batch, 4)


def test_the_first_sparse_layer_limits_heap_retention_once_unless_the_user_chose(monkeypatch):
    """g2gnet.malloc.limit_retention: glibc's mmap threshold set once per process, when a sparse
    weight is first built, and the trim threshold with it (a fixed mmap threshold leaves it at 128 KiB);
    MALLOC_MMAP_THRESHOLD_ (the user's own setting) or G2G_MALLOC=0 keep both off, MALLOC_TRIM_THRESHOLD_
    the trim threshold."""
    from g2gnet import malloc

    calls = []
    monkeypatch.setattr(malloc, "_mallopt", lambda param, value: calls.append((param, value)))
    for env, want in (({}, [(-3, 4 << 20), (-1, 32 << 20)]), ({"MALLOC_MMAP_THRESHOLD_": "65536"}, []),
                      ({"G2G_MALLOC": "0"}, []), ({"MALLOC_TRIM_THRESHOLD_": "65536"}, [(-3, 4 << 20)])):
        calls.clear()
        monkeypatch.setattr(malloc, "_limited", False)
        monkeypatch.setattr(malloc, "_applied", False)
        monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
        monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
        monkeypatch.delenv("G2G_MALLOC", raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        SparseLinear(8, 8)
        SparseLinear(8, 8)  # once per process
        assert calls == want, (env, calls)


def test_keep_defaults_leaves_the_allocator_to_glibc_for_the_rest_of_the_process(monkeypatch):
    """g2gnet.malloc.keep_defaults (benchmarks: dense as plain PyTorch runs it): no sparse layer built
    afterwards changes the thresholds; it says False when g2gnet had already changed them."""
    from g2gnet import malloc

    calls = []
    monkeypatch.setattr(malloc, "_mallopt", lambda param, value: calls.append((param, value)))
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.delenv("G2G_MALLOC", raising=False)
    monkeypatch.setattr(malloc, "_limited", False)
    monkeypatch.setattr(malloc, "_applied", False)
    assert malloc.keep_defaults() is True
    SparseLinear(8, 8)
    assert calls == [] and malloc.describe() == "glibc's defaults"
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    assert malloc.describe() == "glibc's defaults with the user's MALLOC_TRIM_THRESHOLD_"
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setattr(malloc, "_limited", False)
    SparseLinear(8, 8)
    assert calls == [(-3, 4 << 20), (-1, 32 << 20)]
    assert malloc.keep_defaults() is False
    assert malloc.describe() == "g2gnet's: mmap threshold 4 MiB, trim threshold 32 MiB"


def test_large_step_buffers_ask_for_huge_pages_on_their_whole_2mib_pages(monkeypatch):
    """g2gnet.malloc.huge: MADV_HUGEPAGE (14) on every whole 2 MiB page inside a buffer of 4 MiB or
    more, nothing on smaller ones or with G2G_HUGEPAGES=0 (read at import: the module flag)."""
    from g2gnet import malloc

    calls = []
    monkeypatch.setattr(malloc, "_madvise", lambda addr, length, advice: calls.append((addr, length, advice)))
    big = torch.empty(3 << 20)  # 12 MiB
    assert malloc.huge(big) is big
    (addr, length, advice), = calls
    start, end, page = big.data_ptr(), big.data_ptr() + (12 << 20), 2 << 20
    assert advice == 14 and addr % page == 0 and length % page == 0
    assert start <= addr < start + page and end - page < addr + length <= end
    calls.clear()
    malloc.huge(torch.empty(1 << 19))  # 2 MiB: below the threshold
    monkeypatch.setattr(malloc, "_HUGE_ENV", False)
    malloc.huge(torch.empty(3 << 20))
    assert calls == []


@pytest.mark.parametrize("value,default,want", [
    (None, True, True), ("", False, False), ("0", True, False), ("OFF", True, False), (" False ", True, False),
    ("1", False, True), ("yes", False, True), ("on", False, True),
])
def test_environment_switches_read_one_way(monkeypatch, value, default, want):
    """G2G_FAST, G2G_NO_NATIVE, G2G_MALLOC and G2G_HUGEPAGES: 0/off/false in any case say no, other
    values yes, unset the default (G2G_FAST=False once left the fast path on)."""
    from g2gnet.env import switch
    if value is None:
        monkeypatch.delenv("G2G_TEST_SWITCH", raising=False)
    else:
        monkeypatch.setenv("G2G_TEST_SWITCH", value)
    assert switch("G2G_TEST_SWITCH", default) is want


def test_writes_into_the_derived_weight_or_mask_are_refused_not_lost():
    # weight and mask are rebuilt at each access: a write into one changed a copy, silently
    layer = _layer()
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    writes = {
        "init": lambda: torch.nn.init.kaiming_uniform_(layer.weight),
        "data": lambda: layer.weight.data.copy_(torch.zeros(16, 24)),
        "in place": lambda: layer.weight.mul_(2),
        "a row's view": lambda: layer.weight[0].fill_(1.0),
        "detached view": lambda: layer.weight.detach().zero_(),
        "item": lambda: layer.weight.__setitem__((0, 0), 5.0),
        "out=": lambda: torch.mul(torch.ones(16, 24), 2, out=layer.weight.detach()),
        "inplace=True": lambda: torch.nn.functional.relu(layer.weight.detach(), inplace=True),
    }
    for name, write in writes.items():
        with torch.no_grad(), pytest.raises(G2GError, match="load_dense_"):
            write()
    with pytest.raises(G2GError, match="set_mask_"):
        layer.mask[0, :] = False
    with pytest.raises(G2GError, match="cannot be assigned.*load_dense_"):
        layer.weight = torch.nn.Parameter(torch.zeros(16, 24))
    with pytest.raises(G2GError, match="cannot be assigned.*set_mask_"):
        layer.mask = torch.ones(16, 24, dtype=torch.bool)
    after = layer.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # reading, computing and differentiating work as with any tensor; results are plain tensors
    w = layer.weight
    assert type(w * 2) is torch.Tensor and type(w.clone()) is torch.Tensor and repr(w).startswith("tensor(")
    other = torch.zeros(16, 24)
    other.copy_(w)  # writing *from* it into another tensor is fine
    assert torch.equal(other, w)
    (layer.weight ** 2).sum().backward()
    assert layer.values.grad.abs().sum() > 0
    x = torch.randn(3, 24)
    torch.testing.assert_close(torch.compile(lambda x: x @ layer.weight.T + layer.bias, fullgraph=True)(x), layer(x))
    # saved and copied as the plain tensors they are
    buffer = io.BytesIO()
    torch.save({"weight": layer.weight, "mask": layer.mask}, buffer)
    buffer.seek(0)
    got = torch.load(buffer, weights_only=True)
    assert type(got["weight"]) is torch.Tensor and torch.equal(got["weight"], layer.weight)
    assert type(got["mask"]) is torch.Tensor and torch.equal(got["mask"], layer.mask)
    mine = copy.deepcopy(layer.weight.detach())
    assert type(mine) is torch.Tensor and torch.equal(mine.zero_(), torch.zeros(16, 24))
    # what is not an ordinary strided tensor is left as it is: sparse forms, torch.func, fake tensors
    assert layer.mask.to_sparse().layout == torch.sparse_coo
    torch.testing.assert_close(torch.func.vmap(lambda row: layer.weight @ row)(x), x @ layer.weight.T)
    torch.testing.assert_close(torch.func.grad(lambda row: (layer.weight @ row).sum())(x[0]), layer.weight.sum(0))
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode(allow_non_fake_inputs=True):
        assert (layer.weight * 2).shape == (16, 24)


def test_load_dense_checks_its_bias():
    layer = _layer()
    with pytest.raises(G2GError, match=r"bias must have shape \(16,\)"):
        layer.load_dense_(torch.zeros(16, 24), torch.ones(1))
    with pytest.raises(G2GError, match="bias=False"):
        _layer(bias=False).load_dense_(torch.zeros(16, 24), torch.ones(16))
    layer.load_dense_(torch.ones(16, 24), torch.full((16,), 7.0))
    assert torch.equal(layer.bias, torch.full((16,), 7.0)) and torch.equal(layer.weight, layer.mask.float())


def test_a_checkpoint_of_another_input_width_is_refused_even_within_a_byte():
    # the mask's bits are padded to whole bytes: a 6-input layer's checkpoint fit an 8-input layer
    narrow, wide = SparseLinear(6, 4), SparseLinear(8, 4)
    with pytest.raises(G2GError, match="6 inputs; this layer has 8"):
        wide.load_state_dict(narrow.state_dict())
    old = {k: v for k, v in SparseLinear(8, 4).state_dict().items() if not k.endswith("in_features")}
    with pytest.raises(G2GError, match="beyond this layer's 6 inputs"):  # a checkpoint without its width
        narrow.load_state_dict(old)
    wide.load_state_dict(SparseLinear(8, 4).state_dict())


@pytest.mark.parametrize("grad", [True, False])
@pytest.mark.parametrize("shape", [(3, 23), (23,), ()])
def test_an_input_of_the_wrong_width_is_one_error_on_every_path(shape, grad):
    # the reference path raised torch's "mat1 and mat2 shapes cannot be multiplied", the serving
    # kernel its own message
    layer = _layer()
    with torch.set_grad_enabled(grad), pytest.raises(G2GError, match=r"takes inputs \[\.\.\., 24\]"):
        layer(torch.randn(shape))
