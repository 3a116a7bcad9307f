"""Dynamic sparse training (g2gnet.dst): criteria, rewire, schedule, Hebbian scores, checkpoints."""

from __future__ import annotations

import io
import itertools
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from g2gnet.dst import GROW, PRUNE, DynamicSparsity, Schedule, hebbian_scores, rewire, set_mask_moving_state
from g2gnet.errors import G2GError
from g2gnet.layers import SparseLinear, sparse_layers
from g2gnet.optim import adam
from g2gnet.train import train_step
from g2gnet.models import build_model


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The tensors here are tiny: a second thread only adds contention, and the 100-update
    # sweeps were 10x slower on a loaded 2-core machine with it.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(name: str = "g2g-mixer", seed: int = 0) -> nn.Module:
    return build_model(name, 64, 10, hidden=[32, 32], groups=4, seed=seed)


def _batch(step: int, n: int = 16, d: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The synthetic batch of a given step (same data whatever the process history)."""
    g = torch.Generator().manual_seed(1000 + step)
    return torch.randn(n, d, generator=g), torch.randint(0, 10, (n,), generator=g)


def _train_step(model, opt, dst, step: int):
    train_step(model, opt, *_batch(step))
    return dst.step()


def _state_dense(layer, opt, key):
    """Optimizer state ``key`` of a SparseLinear as a dense [out, in] tensor."""
    parts = [opt.state.get(p, {}).get(key, torch.zeros_like(p)) for p in (layer.intra, layer.values)]
    return layer.packed.dense(*parts)


def _masked_weights_zero(model) -> bool:
    return all(not layer.weight[~layer.mask].any() for _, layer in sparse_layers(model))


# -- Hebbian scores ---------------------------------------------------------------------------
def _reference_scores(pre, post, kind):
    x, y = pre.double(), post.double()
    if kind == "pearson":
        x, y = x - x.mean(0), y - y.mean(0)
    num = y.T @ x
    den = torch.outer(y.norm(dim=0), x.norm(dim=0))
    return torch.where(den > 0, num / den, 0.0)


@pytest.mark.parametrize("kind", ["cosine", "pearson"])
def test_hebbian_scores_match_float64_reference(kind):
    pre, post = torch.randn(50, 7), torch.relu(torch.randn(50, 5))
    got = hebbian_scores(pre, post, kind)
    assert got.shape == (5, 7)
    torch.testing.assert_close(got.double(), _reference_scores(pre, post, kind), atol=1e-6, rtol=1e-5)
    # extra leading dimensions are samples too
    torch.testing.assert_close(hebbian_scores(pre.view(5, 10, 7), post.view(5, 10, 5), kind), got)


def test_hebbian_scores_hand_worked():
    pre = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # unit 0: (1, 1), unit 1: (0, 1)
    post = torch.tensor([[2.0], [0.0]])  # unit 0: (2, 0)
    torch.testing.assert_close(hebbian_scores(pre, post), torch.tensor([[1 / math.sqrt(2), 0.0]]))


@pytest.mark.parametrize("kind", ["cosine", "pearson"])
def test_dead_units_score_zero(kind):
    pre, post = torch.randn(20, 4), torch.relu(torch.randn(20, 3))
    pre[:, 1] = 0  # dead input unit
    post[:, 2] = 0  # dead output unit
    s = hebbian_scores(pre, post, kind)
    assert not s[:, 1].any() and not s[2].any()
    assert s[:2][:, [0, 2, 3]].abs().min() > 0
    if kind == "pearson":  # a constant unit has no correlation either
        pre[:, 3] = 0.7
        assert not hebbian_scores(pre, post, kind)[:, 3].any()


def test_unknown_score_kind():
    with pytest.raises(G2GError, match="cosine, pearson"):
        hebbian_scores(torch.ones(2, 2), torch.ones(2, 2), "spearman")


# -- rewire -----------------------------------------------------------------------------------
def test_magnitude_prunes_exactly_the_smallest():
    mask = torch.tensor([[True, True, False], [True, False, True]])
    weight = torch.tensor([[0.1, -0.9, 0.0], [-0.2, 0.0, 0.5]])
    grow = torch.tensor([[0.0, 0.0, 3.0], [0.0, 2.0, 0.0]])
    new, pruned, grown = rewire(mask, weight.abs(), grow, 2)
    assert pruned.tolist() == [[True, False, False], [True, False, False]]  # |0.1|, |-0.2|
    assert grown.tolist() == [[False, False, True], [False, True, False]]
    assert new.tolist() == [[False, True, True], [False, True, True]]


def test_just_pruned_and_active_positions_are_never_regrown():
    mask = torch.tensor([[True, True, False, False]])
    keep = torch.tensor([[0.0, 5.0, 0.0, 0.0]])
    grow = torch.tensor([[9.0, 8.0, 1.0, 2.0]])  # the best grow scores sit on active entries
    new, pruned, grown = rewire(mask, keep, grow, 1)
    assert pruned.tolist() == [[True, False, False, False]]
    assert grown.tolist() == [[False, False, False, True]]
    assert not (grown & mask).any() and not (grown & pruned).any()
    assert int(new.sum()) == int(mask.sum())


def test_rewire_caps_n_to_what_can_be_regrown():
    mask = torch.ones(3, 3, dtype=torch.bool)
    mask[1, 2] = False  # one inactive position: at most one swap
    new, pruned, grown = rewire(mask, torch.rand(3, 3), torch.rand(3, 3), 5)
    assert int(pruned.sum()) == int(grown.sum()) == 1 and int(new.sum()) == 8
    full = torch.ones(2, 2, dtype=torch.bool)
    new, pruned, grown = rewire(full, torch.rand(2, 2), torch.rand(2, 2), 3)
    assert torch.equal(new, full) and not pruned.any() and not grown.any()


def test_rewire_tie_breaking_is_deterministic():
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[:, :3] = True
    zeros = torch.zeros(4, 6)
    _, pruned, grown = rewire(mask, zeros, zeros, 2)  # no generator: lowest flat index
    assert pruned.nonzero().tolist() == [[0, 0], [0, 1]]
    assert grown.nonzero().tolist() == [[0, 3], [0, 4]]
    runs = [rewire(mask, zeros, zeros, 5, generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    assert int(runs[0][0].sum()) == 12
    # with a generator, ties do not all go to the first rows (group 0 in a contiguous grouping)
    grown_rows = set()
    for seed in range(10):
        _, _, grown = rewire(mask, zeros, zeros, 2, generator=torch.Generator().manual_seed(seed))
        grown_rows |= set(grown.nonzero()[:, 0].tolist())
    assert len(grown_rows) > 1


def test_nan_keep_scores_are_pruned_first():
    mask = torch.tensor([[True, True, True, False]])
    keep = torch.tensor([[1.0, float("nan"), 0.5, 0.0]])
    _, pruned, _ = rewire(mask, keep, torch.zeros(1, 4), 1)
    assert pruned.tolist() == [[False, True, False, False]]


# -- optimizer state --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda p: torch.optim.Adam(p, 1e-2, weight_decay=1e-4),
        lambda p: adam(p, 1e-2, weight_decay=1e-4),  # the fused Adam of the training loop
        lambda p: torch.optim.Adam(p, 1e-2, amsgrad=True),
        lambda p: torch.optim.AdamW(p, 1e-2),
        lambda p: torch.optim.SGD(p, 1e-2, momentum=0.9, weight_decay=1e-4),
    ],
)
def test_set_mask_moves_optimizer_state_with_the_values(make):
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(8, 12, generator=g) < 0.5
    layer = SparseLinear(12, 8, mask, generator=g)
    opt = make(layer.parameters())
    layer(torch.randn(5, 12)).square().sum().backward()
    opt.step()
    dense = {k: _state_dense(layer, opt, k) for k, v in opt.state[layer.values].items() if v.dim() > 0}
    assert dense  # the optimizer does keep per-element state
    weight = layer.weight.detach().clone()
    new = mask.clone()
    new[0, :] = ~mask[0, :]  # row 0 swaps all its connections; the other rows keep theirs
    changed = new ^ mask
    set_mask_moving_state(layer, new, opt, changed)
    assert torch.equal(layer.mask, new)
    assert torch.equal(layer.weight.detach(), weight * new * ~changed)  # kept values, grown at 0
    for key, before in dense.items():
        after = _state_dense(layer, opt, key)
        assert not after[changed].any() and not after[~new].any()
        assert torch.equal(after[new & ~changed], before[new & ~changed])
    layer(torch.randn(5, 12)).square().sum().backward()
    opt.step()  # the moved state fits the new layout
    assert not layer.weight[~new].any()


def test_dst_resets_state_of_pruned_and_grown_weights():
    model = _model()
    opt = torch.optim.Adam(model.parameters(), 1e-2, weight_decay=1e-4, amsgrad=True)
    dst = DynamicSparsity(model, opt, prune="magnitude", grow="gradient", interval=3, fraction=0.3)
    before = {}
    for step in range(3):
        before = {n: l.mask.clone() for n, l in sparse_layers(model)}
        stats = _train_step(model, opt, dst, step)
    assert stats is not None
    for name, layer in sparse_layers(model):
        changed = before[name] ^ layer.mask
        assert changed.any()
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            state = _state_dense(layer, opt, key)
            assert not state[changed].any()
            assert state[before[name] & layer.mask].any()  # kept weights keep their moments
        assert not layer.weight[before[name] ^ layer.mask].any()  # pruned and grown weights are 0


# -- the whole update -------------------------------------------------------------------------
@pytest.mark.parametrize("start", ["g2g-mixer", "er"])
@pytest.mark.parametrize("prune,grow", list(itertools.product(PRUNE, GROW)))
def test_density_exact_and_pruned_stay_zero(start, prune, grow):
    model = _model(start)
    opt = torch.optim.Adam(model.parameters(), 1e-2, weight_decay=1e-4)
    dst = DynamicSparsity(model, opt, prune=prune, grow=grow, interval=1, fraction=0.1, check=True)
    nnz = {n: l.nnz for n, l in sparse_layers(model)}
    changed = 0
    for step in range(100):
        stats = _train_step(model, opt, dst, step)
        assert {n: l.nnz for n, l in sparse_layers(model)} == nnz
        changed += sum(s["changed"] for s in stats["layers"].values())
    assert changed > 0
    for step in range(100, 105):  # plain Adam steps with weight decay after the last update
        train_step(model, opt, *_batch(step))
        assert _masked_weights_zero(model)
    for name, s in stats["layers"].items():
        assert s["density"] == pytest.approx(nnz[name] / dict(sparse_layers(model))[name].mask.numel())
        assert (s["intra_fraction"] is None) == (start == "er")
        assert 0 < s["ever_active"] <= 1
    dst.close()


@pytest.mark.parametrize(
    "make",
    [
        lambda p: torch.optim.SGD(p, 0.1, momentum=0.9, weight_decay=1e-3),
        lambda p: torch.optim.AdamW(p, 1e-2),
    ],
)
def test_pruned_stay_zero_with_other_optimizers(make):
    model = _model()
    opt = make(model.parameters())
    dst = DynamicSparsity(model, opt, prune="magnitude", grow="gradient", interval=2, fraction=0.2)
    for step in range(30):
        _train_step(model, opt, dst, step)
        assert _masked_weights_zero(model)


def test_rewiring_with_the_fast_path():
    # set_mask_ must invalidate the fast path's cached plan; the captured gradient must not
    # depend on which kernel computed the layer.
    model = _model()
    for _, layer in sparse_layers(model):
        layer.fast = True
    opt = torch.optim.Adam(model.parameters(), 1e-2, weight_decay=1e-4)
    dst = DynamicSparsity(model, opt, prune="hebbian", grow="gradient", interval=1, fraction=0.2, check=True)
    x, y = _batch(0)
    F.cross_entropy(model(x), y).backward()
    layer = model.blocks[1].linear
    h = model.blocks[0](x).detach()
    out = F.linear(h, layer.weight * layer.mask, layer.bias)
    out.retain_grad()
    F.cross_entropy(model.head(torch.relu(out)), y).backward()
    torch.testing.assert_close(dst.recorder.grad["blocks.1.linear"], out.grad.T @ h)
    for step in range(1, 30):
        stats = _train_step(model, opt, dst, step)
        assert _masked_weights_zero(model)
    assert all(s["changed"] > 0 for s in stats["layers"].values())


def test_hebbian_growth_hand_built_layer():
    # o0 = x0 and o1 = 0.5 x1 (raw outputs of a bare layer); input 2 repeats input 0's activity,
    # so (o0, i2) is the one inactive connection with a non-zero score (cosine 1).
    mask = torch.tensor([[True, False, False], [False, True, False]])
    layer = SparseLinear(3, 2, mask, bias=False)
    layer.load_dense_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.0]]))
    model = nn.Sequential(layer)
    dst = DynamicSparsity(model, None, prune="magnitude", grow="hebbian", interval=1, fraction=0.5)
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    model(x)
    stats = dst.step()
    assert layer.mask.tolist() == [[True, False, True], [False, False, False]]
    assert layer.weight.tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]  # pruned 0.5, grown at 0
    assert stats["layers"]["0"]["changed"] == 1 and stats["layers"]["0"]["intra_fraction"] is None


def test_hebbian_uses_block_input_and_relu_output():
    model = _model()
    dst = DynamicSparsity(model, None, grow="hebbian", interval=5, window=1)
    for _ in range(4):
        dst.step()
    x = torch.randn(16, 64)
    pre = model.frontend(x).flatten(1)
    block = model.blocks[0]
    expected = hebbian_scores(pre, torch.relu(block.linear(pre)))
    model(x)
    torch.testing.assert_close(dst.recorder.activity["blocks.0.linear"].scores(), expected)


def test_gradient_growth_uses_the_masked_product():
    model = _model()
    layer = model.blocks[1].linear
    dst = DynamicSparsity(model, None, prune="magnitude", grow="gradient", interval=1, fraction=0.2)
    x, y = _batch(0)
    F.cross_entropy(model(x), y).backward()
    # float64 reference: dL/d(W ⊙ M) = grad_out^T @ input of the layer
    m64 = _model().double()
    m64.load_state_dict(model.state_dict())
    h = m64.blocks[0](m64.frontend(x.double()).flatten(1))
    out = m64.blocks[1].linear(h)
    out.retain_grad()
    F.cross_entropy(m64.head(m64.blocks[1].act(out)), y).backward()
    reference = out.grad.T @ h
    captured = dst.recorder.grad["blocks.1.linear"]
    torch.testing.assert_close(captured.double(), reference, atol=1e-6, rtol=1e-5)
    assert captured[~layer.mask].abs().sum() > 0  # non-zero off the mask ...
    assert not layer.packed.dense(layer.intra.grad, layer.values.grad)[~layer.mask].any()  # ... where the layer's own gradient is zero
    old = layer.mask.clone()
    dst.step()
    grown = layer.mask & ~old
    k = int(grown.sum())
    best = reference.abs().masked_fill(old, -1).flatten().topk(k).values
    torch.testing.assert_close(reference.abs()[grown].sort().values, best.sort().values)


@pytest.mark.parametrize("window,expected", [(1, [4]), (2, [3, 4]), ("all", [1, 2, 3, 4])])
def test_window_records_the_right_batches(window, expected):
    model = _model()
    dst = DynamicSparsity(model, None, grow="hebbian", interval=4, window=window)
    stats = dst.recorder.activity["blocks.1.linear"]
    pres, posts = {}, {}

    def capture(block, args, output):
        if block.training and torch.is_grad_enabled():
            pres[step], posts[step] = args[0].detach(), output.detach()

    handle = model.blocks[1].register_forward_hook(capture)
    for step in range(1, 5):  # batch `step` has `step` samples
        model(torch.randn(step, 64))
        model.eval()
        model(torch.randn(3, 64))  # evaluation passes are never recorded ...
        model.train()
        with torch.no_grad():
            model(torch.randn(3, 64))  # ... nor no-grad ones
        if step < 4:
            dst.step()
    handle.remove()
    assert stats.n == sum(expected)
    pre, post = (torch.cat([d[s] for s in expected]) for d in (pres, posts))
    reference = hebbian_scores(pre, post)
    torch.testing.assert_close(stats.scores(), reference)
    assert dst.step() is not None and stats.n == 0  # consumed by the update
    model(torch.randn(2, 64))
    assert stats.n == (2 if window == "all" else 0)  # the next window


@pytest.mark.parametrize(
    "prune,grow,window,decay",
    [
        ("random", "hebbian", "all", "constant"),
        ("hebbian", "gradient", 2, "cosine"),
        ("magnitude", "random", 1, "cosine"),
    ],
)
def test_state_dict_round_trip_continues_identically(prune, grow, window, decay):
    kw = dict(prune=prune, grow=grow, interval=3, fraction=0.2, window=window, decay=decay, stop=0.9,
              total_steps=20, score="pearson", seed=7)

    def fresh():
        model = _model("er")
        opt = torch.optim.Adam(model.parameters(), 1e-2, weight_decay=1e-4)
        return model, opt, DynamicSparsity(model, opt, **kw)

    model, opt, dst = fresh()
    stats = [_train_step(model, opt, dst, s) for s in range(20)]

    model2, opt2, dst2 = fresh()
    stats2 = [_train_step(model2, opt2, dst2, s) for s in range(8)]  # mid-interval, inside windows
    state = dst2.state_dict()
    in_flight = [a["n"] for a in state["recorder"]["activity"].values()]
    in_flight += [g is not None for g in state["recorder"]["grad"].values()]
    assert any(in_flight) == (window != 1)  # the checkpoint carries half-collected evidence
    buf = io.BytesIO()
    torch.save({"model": model2.state_dict(), "opt": opt2.state_dict(), "dst": state}, buf)
    dst2.close()
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    model3, opt3, dst3 = fresh()
    model3.load_state_dict(ckpt["model"])
    opt3.load_state_dict(ckpt["opt"])
    dst3.load_state_dict(ckpt["dst"])
    stats2 += [_train_step(model3, opt3, dst3, s) for s in range(8, 20)]

    assert stats2 == stats
    assert sum(s is not None for s in stats) == 6  # steps 3..18; none after stop·T = 18
    for (_, a), (_, b) in zip(sparse_layers(model), sparse_layers(model3)):
        assert torch.equal(a.mask, b.mask) and torch.equal(a.weight, b.weight)
    assert all(torch.equal(dst.ever_active[n], dst3.ever_active[n]) for n in dst.ever_active)


def test_load_state_dict_refuses_other_settings():
    model = _model()
    state = DynamicSparsity(model, None, interval=5).state_dict()
    with pytest.raises(G2GError, match="interval=5"):
        DynamicSparsity(_model(), None, interval=6).load_state_dict(state)
    with pytest.raises(G2GError, match="not a DynamicSparsity state"):
        DynamicSparsity(_model(), None).load_state_dict({"step": 3})


# -- schedule and arguments -------------------------------------------------------------------
def test_schedule():
    s = Schedule(interval=10, fraction=0.3, decay="cosine", stop=0.5, total_steps=100)
    assert [t for t in range(101) if s.is_update(t)] == [10, 20, 30, 40, 50]
    assert s.fraction_at(0) == pytest.approx(0.3) and s.fraction_at(25) == pytest.approx(0.15)
    assert s.fraction_at(50) == pytest.approx(0.0) and s.next_update(50) is None
    s1 = Schedule(interval=1, fraction=0.1, decay="constant", stop=1.0)
    assert not s1.is_update(0) and s1.next_update(0) == 1


def test_no_update_at_the_last_step():
    """Its regrown connections (at 0) would have no step left to train, and the model would be
    evaluated so; without a known length every interval still counts."""
    s = Schedule(interval=5, fraction=0.1, decay="constant", stop=1.0, total_steps=10)
    assert [t for t in range(11) if s.is_update(t)] == [5] and s.next_update(5) is None
    assert Schedule(interval=5, fraction=0.1, decay="constant", stop=1.0).is_update(10)


def test_recorder_sees_the_layer_output_before_a_user_hook_registered_before_or_after_it():
    def recorded(hook_first: bool) -> torch.Tensor:
        model = _model()
        double = lambda m, i, o: o * 2  # noqa: E731
        if hook_first:
            model.blocks[0].linear.register_forward_hook(double)
        dst = DynamicSparsity(model, None, prune="magnitude", grow="gradient", interval=5, window="all")
        if not hook_first:
            model.blocks[0].linear.register_forward_hook(double)
        x, y = _batch(0)
        F.cross_entropy(model(x), y).backward()
        return next(g for g in dst.recorder.grad.values() if g is not None)

    torch.testing.assert_close(recorded(True), recorded(False), rtol=0, atol=0)


def test_hooks_are_registered_only_while_recording_and_removed_on_close():
    model = _model()
    dst = DynamicSparsity(model, None, prune="hebbian", grow="gradient", interval=5, window=2)
    hooked = lambda: any(m._forward_hooks for m in model.modules())  # noqa: E731
    seen = []
    for _ in range(10):  # steps 1-2 and 6-7 lie outside the window of the updates at 5 and 10
        seen.append((dst.recorder.recording, hooked()))
        dst.step()
    assert seen == [(r, r) for r in (False, False, False, True, True, False, False, False, True, True)]
    dst.recorder.recording = True
    assert hooked()
    dst.close()
    assert not hooked()
    dst.recorder.recording = True  # a closed recorder stays closed
    assert not hooked() and not dst.recorder.recording


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(prune="smallest"), "valid: magnitude, random, hebbian"),
        (dict(grow="magnitude"), "valid: hebbian, random, gradient"),
        (dict(interval=0), "interval"),
        (dict(fraction=1.5), "fraction"),
        (dict(fraction=float("nan")), "fraction"),
        (dict(decay="linear"), "constant, cosine"),
        (dict(stop=0.0), "stop"),
        (dict(stop=0.5), "total_steps"),
        (dict(decay="cosine"), "total_steps"),
        (dict(window=0), "window"),
        (dict(window="some"), "window"),
        (dict(score="spearman"), "cosine, pearson"),
        (dict(fraction="0.1"), "fraction"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(G2GError, match=message):
        DynamicSparsity(_model(), None, **kwargs)


def test_frozen_layers_stay_as_they_are():
    model = _model()
    frozen, trained = (layer for _, layer in sparse_layers(model))
    frozen.requires_grad_(False)
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    opt = adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    dst = DynamicSparsity(model, opt, prune="magnitude", grow="random", interval=1, fraction=0.3)
    mask = trained.mask.clone()
    for step in range(3):
        _train_step(model, opt, dst, step)
    assert list(dst.layers) == ["blocks.1.linear"] and not torch.equal(trained.mask, mask)
    assert all(torch.equal(v, before[k]) for k, v in frozen.state_dict().items())


def test_layers_dst_would_regrow_for_nothing_are_refused():
    model = _model()
    layer = sparse_layers(model)[0][1]
    opt = adam([p for n, p in model.named_parameters() if not n.startswith("blocks.0.")], lr=1e-2)
    with pytest.raises(G2GError, match="'blocks.0.linear' has trainable weights that are not in the optimizer"):
        DynamicSparsity(model, opt)
    layer.packed.intra.requires_grad_(False)
    with pytest.raises(G2GError, match="'blocks.0.linear' has frozen and trainable weights"):
        DynamicSparsity(model, None)
    model.requires_grad_(False)
    with pytest.raises(G2GError, match="every SparseLinear of the model is frozen"):
        DynamicSparsity(model, None)


def test_without_an_optimizer_a_new_values_parameter_is_said():
    """An optimizer made before DST and not given to it would keep the old Parameter and never
    train the inter-group weights: DST says so when it had to make a new one."""
    with pytest.warns(UserWarning, match="an optimizer made before it still holds the old ones"):
        DynamicSparsity(_model(), None)
    model = _model()
    opt = adam(model.parameters(), lr=1e-2)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DynamicSparsity(model, opt)


def test_random_choices_do_not_replay_the_masks_draws():
    """A model and its DST given the same seed (as g2g train does): DST's first random scores
    once replayed the uniforms that drew the masks, and a random prune took intra-group
    connections (p_intra = 0.5) at 0.68 of its choices against their 0.52 of the active ones."""
    pruned_intra = active_intra = 0.0
    for seed in range(10):
        model = build_model("g2g-index", 64, 10, hidden=[64], groups=4, p_intra=0.5, p_inter=0.15, seed=seed)
        layer = model.blocks[0].linear
        same = layer.out_groups[:, None] == layer.in_groups[None, :]
        dst = DynamicSparsity(model, adam(model.parameters(), lr=1e-2), prune="random", grow="random",
                              interval=1, fraction=0.1, seed=seed)
        old = layer.mask.clone()
        dst.step()
        pruned = old & ~layer.mask
        pruned_intra += float((pruned & same).sum() / pruned.sum()) / 10
        active_intra += float((old & same).sum() / old.sum()) / 10
    assert abs(pruned_intra - active_intra) < 0.06, (pruned_intra, active_intra)


def test_model_without_sparse_layers_raises():
    with pytest.raises(G2GError, match="SparseLinear"):
        DynamicSparsity(_model("dense"), None)


def test_a_dst_section_or_keywords_describe_one_rule():
    from g2gnet.config import PAPER_RULE, DSTConfig

    section = DSTConfig(prune="hebbian", grow="gradient", interval=7, fraction=0.2)
    dst = DynamicSparsity(_model(), None, section)
    assert dst.config == section
    assert DynamicSparsity(_model(), None, section, interval=9).config == section.replace(interval=9)
    keywords = DynamicSparsity(_model(), None, prune="hebbian", grow="gradient", interval=7, fraction=0.2)
    assert keywords.settings == dst.settings  # what a checkpoint must match
    # Without a section and without names: the paper's rule, the rest DSTConfig's defaults.
    paper = DynamicSparsity(_model(), None).config
    assert (paper.prune, paper.grow) == PAPER_RULE == ("magnitude", "hebbian")
    assert paper.replace(prune=None, grow=None) == DSTConfig()
    assert DynamicSparsity(_model(), None, grow="random").config.prune == "magnitude"
    with pytest.raises(G2GError, match="names none"):
        DynamicSparsity(_model(), None, DSTConfig())  # a run's static section
    with pytest.raises(G2GError, match="config must be a DSTConfig"):
        DynamicSparsity(_model(), None, "magnitude")  # the rule is named by keyword
    with pytest.raises(G2GError, match="unknown dst option"):
        DynamicSparsity(_model(), None, section, rate=0.1)


def test_window_is_a_count_or_all():
    assert DynamicSparsity(_model(), None, window=3).window == 3
    assert DynamicSparsity(_model(), None, window="all").window is None


def test_composite_prunes_thirds_by_magnitude_random_and_hebbian():
    from itertools import combinations

    from g2gnet.dst.criteria import Context, composite
    from g2gnet.dst.hebbian import ActivityStats

    layer = SparseLinear(6, 4, torch.ones(4, 6, dtype=torch.bool))
    layer.load_dense_(torch.arange(1.0, 25.0).view(4, 6))  # |w| grows with the flat index
    stats = ActivityStats()
    stats.update(torch.rand(40, 6), torch.rand(40, 4))
    heb = stats.scores()
    ctx = Context(torch.Generator().manual_seed(0), activity=stats, n=6)
    score = composite(layer, ctx)
    pruned = set((score.reshape(-1) == 0).nonzero().squeeze(1).tolist())
    assert len(pruned) == 6 and {0, 1} <= pruned  # the two smallest magnitudes
    rest = pruned - {0, 1}
    # Some two of the remaining four are the random third; the other two must then be the
    # lowest Hebbian scores among what the first two thirds left.
    flat = heb.reshape(-1)

    def lowest_two(excluded):
        left = [i for i in range(24) if i not in excluded]
        return set(sorted(left, key=lambda i: flat[i].item())[:2])

    assert any(lowest_two({0, 1, *r}) == rest - set(r) for r in combinations(rest, 2))
