"""sparsify(): G2G connectivity in models g2gnet did not build (an MLP, PyTorch's
TransformerEncoder), with DST training them; TensorBoard mirroring of a run."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from g2gnet import G2GError, SparseLinear, sparsify
from g2gnet.convert import summary
from g2gnet.dst import GROW, PRUNE, DynamicSparsity
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
    with pytest.raises(G2GError, match="selects no nn.Linear"):
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
