"""sparsify(): G2G connectivity in models g2gnet did not build (an MLP, PyTorch's
TransformerEncoder), with DST training them; TensorBoard mirroring of a run."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from g2gnet import G2GError, SparseLinear, sparsify
from g2gnet.convert import densify, explain, plan, summary
from g2gnet.dst import DynamicSparsity
from g2gnet.optim import adam


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.GELU(), nn.Linear(128, 10))


def test_mlp_keeps_weights_on_active_links_and_the_classifier():
    model = _mlp()
    dense = [m.weight.detach().clone() for m in model if isinstance(m, nn.Linear)]
    x = torch.randn(5, 64)
    sparsify(model, groups=8, seed=1)
    assert isinstance(model[0], SparseLinear) and isinstance(model[2], SparseLinear)
    assert type(model[4]) is nn.Linear  # the final classifier stays dense
    for layer, w in zip((model[0], model[2]), dense):
        torch.testing.assert_close(layer.weight, w * layer.mask)
        assert 0.2 < layer.density < 0.35 and layer.in_groups is not None
    assert model[0].post_activation is model[1] and model[2].post_activation is model[3]
    ref = F.linear(F.gelu(F.linear(F.relu(F.linear(x, dense[0] * model[0].mask, model[0].bias)),
                                   dense[1] * model[2].mask, model[2].bias)), model[4].weight, model[4].bias)
    torch.testing.assert_close(model(x), ref)
    text = summary(model)
    assert "0: SparseLinear 64->128" in text and "4: dense nn.Linear 128->10" in text


def test_include_exclude_and_bad_arguments():
    model = sparsify(_mlp(), include=["4"], groups=2)  # include admits the classifier
    assert isinstance(model[4], SparseLinear) and type(model[0]) is nn.Linear
    model = sparsify(_mlp(), exclude=["0"])
    assert type(model[0]) is nn.Linear and isinstance(model[2], SparseLinear)
    with pytest.raises(G2GError, match="valid: index, random, mixer"):
        sparsify(_mlp(), grouping="stripes")
    with pytest.raises(G2GError, match="include must be a list"):
        sparsify(_mlp(), include="0")
    with pytest.raises(G2GError, match="selects no layer sparsify can replace .it names no nn.Linear."):
        sparsify(_mlp(), include=["nothing.*"])
    with pytest.raises(G2GError, match="groups must be an integer"):
        sparsify(_mlp(), groups="8")


def _transformer() -> nn.Module:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=64, nhead=4, dim_feedforward=128, batch_first=True)
    return nn.Sequential(nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False), nn.Flatten(1),
                         nn.Linear(64 * 6, 10))


def test_transformer_encoder_feed_forward_blocks_are_sparsified():
    model = sparsify(_transformer(), seed=0)
    names = [n for n, m in model.named_modules() if isinstance(m, SparseLinear)]
    assert names == ["0.layers.0.linear1", "0.layers.0.linear2", "0.layers.1.linear1", "0.layers.1.linear2"]
    for i in range(2):  # attention's out_proj is read by its parent directly: left dense
        assert type(model[0].layers[i].self_attn.out_proj) is nn.modules.linear.NonDynamicallyQuantizableLinear
        assert model[0].layers[i].linear1.post_activation is model[0].layers[i].activation
    model.eval()
    with torch.no_grad():  # the fused inference path reads linear weights too: same answer
        assert model(torch.randn(3, 6, 64)).shape == (3, 10)


@pytest.mark.parametrize("prune,grow", [("magnitude", "hebbian"), ("hebbian", "gradient"), ("random", "random")])
def test_dst_trains_a_sparsified_transformer(prune, grow):
    model = sparsify(_transformer(), seed=0)
    opt = adam(model.parameters(), lr=1e-3)
    dst = DynamicSparsity(model, opt, prune=prune, grow=grow, interval=2, fraction=0.2, check=True)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 6, 64, generator=g), torch.randint(0, 10, (16,), generator=g)
    nnz = [m.nnz for m in dst.layers.values()]
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        stats = dst.step()
        losses.append(loss.item())
    assert stats is not None and all(s["changed"] > 0 for s in stats["layers"].values())
    assert [m.nnz for m in dst.layers.values()] == nnz and losses[-1] < losses[0]
    assert all(not m.weight[~m.mask].any() for m in dst.layers.values())


def test_tensorboard_mirrors_a_run(tiny_fmnist, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from g2gnet.cli import main

    out = tmp_path / "run"
    assert main(["train", "--dataset", "fashion-mnist", "--data-dir", str(tiny_fmnist), "--out", str(out),
                 "--hidden", "32,32", "--groups", "4", "--batch-size", "64", "--epochs", "2", "--tensorboard",
                 "--dst", "magnitude:random", "--dst-interval", "4"]) == 0
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "epoch/test_acc" in tags and len(events.Scalars("epoch/test_acc")) == 2
    assert "dst/blocks.0.linear/intra_fraction" in tags


# -- sparsify explains itself; ties, frozen layers, meta (reliability-audit-2 P3, P4, P13, P15, P16) ----------

def test_P3_a_module_used_twice_stays_one_shared_sparse_layer():
    lin = nn.Linear(64, 64)
    m = nn.Sequential(lin, nn.ReLU(), lin, nn.ReLU(), nn.Linear(64, 10))
    sparsify(m)
    assert isinstance(m[0], SparseLinear) and m[0] is m[2]


def test_P4_a_weight_tied_to_an_embedding_is_kept_with_a_reason():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.mid, self.dec = nn.Embedding(64, 64), nn.Linear(64, 64), nn.Linear(64, 64)
            self.dec.weight = self.emb.weight

        def forward(self, t):
            return self.dec(torch.relu(self.mid(self.emb(t))))

    m = Tied()
    with pytest.raises(G2GError, match="dec: its weight is shared with emb"):  # the reason, not another
        sparsify(Tied(), include=["dec"])
    decisions = {d.name: d for d in plan(m, include=["dec", "mid"])}
    assert not decisions["dec"].replace and "shared with emb" in decisions["dec"].reason
    sparsify(m, include=["dec", "mid"])
    assert type(m.dec) is nn.Linear and m.dec.weight is m.emb.weight and isinstance(m.mid, SparseLinear)


def test_P13_meta_models_are_one_error():
    m = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)).to("meta")
    with pytest.raises(G2GError, match="meta device"):
        sparsify(m)


def test_P15_frozen_layers_stay_frozen():
    m = _mlp()
    m[0].requires_grad_(False)
    sparsify(m)
    assert not any(p.requires_grad for p in m[0].parameters())
    assert all(p.requires_grad for p in m[2].parameters())


@pytest.mark.parametrize("act", [nn.ReLU(inplace=True), nn.LeakyReLU(0.1, inplace=True), nn.ELU(inplace=True),
                                 nn.SiLU(inplace=True), nn.LeakyReLU(0.1)], ids=str)
def test_P16_recording_never_changes_the_forward(act):
    torch.manual_seed(0)
    m = sparsify(nn.Sequential(nn.Linear(64, 64), act, nn.Linear(64, 10)))
    assert m[0].post_activation is act
    dst = DynamicSparsity(m, adam(m.parameters(), lr=1e-3), prune="magnitude", grow="hebbian", interval=10,
                          window="all")
    x = torch.randn(32, 64)
    dst.recorder.recording = True
    y_rec = m(x).detach()
    dst.recorder.recording = False
    assert torch.equal(y_rec, m(x).detach())
    stats = dst.recorder.activity["0"]  # post = the activation's own output
    expected = act.__class__(**({"negative_slope": 0.1} if isinstance(act, nn.LeakyReLU) else {}))(m[0](x).detach())
    torch.testing.assert_close(stats.sy, expected.double().sum(0))


def test_hebbian_rule_warns_when_it_falls_back_to_the_raw_output():
    class FunctionalMLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.out = nn.Linear(64, 64), nn.Linear(64, 64), nn.Linear(64, 10)

        def forward(self, x):
            return self.out(F.gelu(self.fc2(F.gelu(self.fc1(x)))))

    m = sparsify(FunctionalMLP())
    with pytest.warns(UserWarning, match="raw output of fc1, fc2"):
        DynamicSparsity(m, None, prune="magnitude", grow="hebbian")
    m = sparsify(FunctionalMLP(), post_activation=F.gelu)
    assert m.fc1.post_activation is F.gelu
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dst = DynamicSparsity(m, torch.optim.SGD(m.parameters(), lr=0.1), prune="magnitude", grow="hebbian",
                              window="all", interval=5)
    x = torch.randn(8, 64)
    dst.recorder.recording = False
    expected = F.gelu(m.fc1(x)).detach().double().sum(0)
    dst.recorder.recording = True
    m(x)
    torch.testing.assert_close(dst.recorder.activity["fc1"].sy, expected)
    m = sparsify(FunctionalMLP(), post_activation={"fc1": F.gelu})
    assert m.fc1.post_activation is F.gelu and m.fc2.post_activation is None


def test_plan_says_why_and_sparsify_warns_when_nothing_is_replaced():
    m = nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))
    text = explain(plan(m))
    assert "0: kept (groups=8 does not divide 784->300)" in text and "4: kept (final classifier)" in text
    with pytest.warns(UserWarning, match="replaced no layer"):
        sparsify(m)
    assert not any(isinstance(x, SparseLinear) for x in m.modules())
    assert [d.replace for d in plan(_mlp())] == [True, True, False]


def test_densify_is_the_way_back():
    m = sparsify(_mlp(), seed=3)
    x = torch.randn(4, 64)
    y = m(x)
    densify(m)
    assert not any(isinstance(x, SparseLinear) for x in m.modules()) and type(m[0]) is nn.Linear
    torch.testing.assert_close(m(x), y)
    lin = nn.Linear(64, 64)
    shared = sparsify(nn.Sequential(lin, nn.ReLU(), lin, nn.ReLU(), nn.Linear(64, 10)))
    densify(shared)
    assert shared[0] is shared[2] and type(shared[0]) is nn.Linear


def test_A2_dst_attached_after_training_steps_with_a_live_graph():
    torch.manual_seed(0)
    m = sparsify(nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)))
    opt = torch.optim.Adam(m.parameters())
    x, t = torch.randn(32, 256), torch.randint(0, 10, (32,))
    for _ in range(5):
        loss = F.cross_entropy(m(x), t)
        opt.zero_grad()
        loss.backward()
        opt.step()  # ``loss`` keeps this step's graph alive
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    dst = DynamicSparsity(m, opt, prune="magnitude", grow="random", interval=2, fraction=0.1, check=True)
    assert all(torch.equal(p.detach()[: before[n].numel()].view_as(before[n]), before[n])
               for n, p in m.named_parameters())  # the reserve only appends room
    params = {id(p) for g in opt.param_groups for p in g["params"]}
    assert all(id(p) in params for p in m.parameters())  # the optimizer holds the new values
    for _ in range(5):
        loss = F.cross_entropy(m(x), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        dst.step()
    assert dst.step_count == 5 and all(opt.state[p]["exp_avg"].shape == p.shape for p in m.parameters())


def _small() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))


def test_densify_keeps_weight_and_bias_trainability_apart():
    m = sparsify(_small(), groups=4, p_inter=0.5)
    assert m[0].intra.numel() and m[0].values.numel()  # both packed parts hold weights
    m[0].bias.requires_grad_(False)  # bias frozen, weights train
    densify(m)
    assert m[0].weight.requires_grad and not m[0].bias.requires_grad
    m = sparsify(_small(), groups=4, p_inter=0.5)
    m[0].packed.requires_grad_(False)  # weights frozen, bias trains
    densify(m)
    assert not m[0].weight.requires_grad and m[0].bias.requires_grad
    m = sparsify(_small(), groups=4, p_inter=0.5)
    m[0].values.requires_grad_(False)  # intra trains, values frozen: one nn.Linear weight cannot say both
    with pytest.raises(G2GError, match=r"0: its packed weights disagree \(intra.requires_grad=True, "
                                       r"values.requires_grad=False\)"):
        densify(m)
    assert isinstance(m[0], SparseLinear)  # nothing replaced


def test_sparsify_keeps_float64_weights_exactly_and_the_global_rng():
    m = _small().double()
    with torch.no_grad():  # float64 values that float32 would round
        m[0].weight.copy_(torch.randn(16, 16, dtype=torch.float64) / 4)
        m[0].bias.copy_(torch.randn(16, dtype=torch.float64) / 4)
    w, b = m[0].weight.detach().clone(), m[0].bias.detach().clone()
    assert not torch.equal(w.float().double(), w) and not torch.equal(b.float().double(), b)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    sparsify(m, groups=4)
    assert m[0].values.dtype == torch.float64
    assert torch.equal(m[0].weight.detach(), w * m[0].mask) and torch.equal(m[0].bias.detach(), b)
    assert torch.equal(torch.rand(3), expected)  # the global RNG is untouched


def test_sparsify_keeps_linears_whose_behaviour_a_sparse_layer_would_drop():
    class Scaled(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    torch.manual_seed(0)
    hooked = nn.Linear(16, 16)
    calls = []
    hooked.register_forward_hook(lambda mod, args, out: calls.append(1))
    m = nn.Sequential(Scaled(16, 16), nn.ReLU(), torch.nn.utils.parametrizations.orthogonal(nn.Linear(16, 16)),
                      nn.ReLU(), hooked, nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    x = torch.randn(3, 16)
    text = explain(plan(m, groups=4))
    assert "0: kept (Scaled is a subclass of nn.Linear" in text
    assert "2: kept (parametrized (weight)" in text
    assert "4: kept (it has forward hooks" in text
    assert "6: replaced" in text
    kept = [m[0], m[2], m[4]]
    sparsify(m, groups=4, p_inter=1.0)  # fully connected: kept layers compute as before
    assert [m[0], m[2], m[4]] == kept and isinstance(m[6], SparseLinear)
    calls.clear()
    m(x)
    assert calls == [1]


def test_bad_input_to_convert_is_one_error():
    for call in (sparsify, densify, plan, summary):
        with pytest.raises(G2GError, match=r"needs a torch.nn.Module, got str"):
            call("abc")
    m = nn.Sequential(nn.LazyLinear(16), nn.ReLU(), nn.Linear(16, 4))
    with pytest.raises(G2GError, match="0: lazy layers must be materialised before sparsify"):
        sparsify(m, groups=4)
    assert isinstance(m[0], nn.LazyLinear)
    m(torch.randn(2, 8))  # materialised: an ordinary nn.Linear now
    assert isinstance(sparsify(m, groups=4, include=["0"])[0], SparseLinear)
