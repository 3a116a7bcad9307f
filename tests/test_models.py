"""build_model: names, parameter matching, seeds, frontends, FLOP counting."""

import pytest
import torch

from g2gnet import G2GError, MODELS, build_model, sparse_layers
from g2gnet.config import ModelConfig
from g2gnet.models import matched_width, used_options
from g2gnet.stats import active_parameters, intra_fraction, macs_per_sample
from g2gnet.topology import group_ids


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_builds_and_runs(name):
    # A mixer has fixed widths (no hidden option) and needs groups that divide its token count:
    # 64 tokens of a 32x32 image (a 28x28 image gives 49).
    mixer = name.startswith("mlp-mixer")
    shape = (3, 32, 32) if mixer else (1, 28, 28)
    model = build_model(name, shape[0] * shape[1] * shape[2], 10, seed=0, **({} if mixer else {"hidden": [64] * 3}))
    assert model(torch.randn(4, *shape)).shape == (4, 10)
    layers = [layer for _, layer in sparse_layers(model)]
    if name in ("dense", "dense-matched", "mlp-mixer"):
        assert not layers
    else:  # every hidden (or block MLP) layer is sparse, at about the paper's density 0.256
        assert len(layers) == (4 * 2 * 2 if mixer else 3)  # a mixer: 4 blocks of two 2-layer MLPs
        assert all(0.15 < layer.density < 0.4 for layer in layers)


def test_matched_width_is_papers_447_and_469():
    assert matched_width(ModelConfig(), 784, 10) == 447
    assert matched_width(ModelConfig(), 512, 10) == 469


def test_dense_matched_params_close_to_g2g_active_params():
    g2g = build_model("g2g-mixer", 784, 10, seed=0)
    dm = build_model("dense-matched", 784, 10, seed=0)
    a, b = active_parameters(g2g), active_parameters(dm)
    assert abs(a - b) / a < 0.005
    assert [b.linear.out_features for b in dm.blocks] == [447, 447, 447]


def test_er_density_equals_expected_g2g_density():
    er = build_model("er", 784, 10, seed=0)
    for _, layer in sparse_layers(er):
        assert layer.nnz == round(0.25625 * layer.mask.numel())


def test_same_seed_same_model_other_seed_differs():
    a = build_model("g2g-random", 784, 10, hidden=[64, 64], seed=5)
    b = build_model("g2g-random", 784, 10, hidden=[64, 64], seed=5)
    c = build_model("g2g-random", 784, 10, hidden=[64, 64], seed=6)
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k
    assert not torch.equal(a.blocks[0].linear.mask, c.blocks[0].linear.mask)


def test_g2g_layers_keep_group_ids_and_intra_fraction():
    model = build_model("g2g-index", 784, 10, seed=0)
    for _, layer in sparse_layers(model):
        # The index grouping: contiguous ensembles on both sides, kept by the layer.
        assert torch.equal(layer.out_groups, group_ids(layer.out_features, 8, "contiguous"))
        assert torch.equal(layer.in_groups, group_ids(layer.in_features, 8, "contiguous"))
        f = intra_fraction(layer)
        assert 0.125 / 0.2563 - 0.02 < f < 0.125 / 0.2563 + 0.02  # intra share of active links


def test_patch_frontend_cifar_shapes_and_macs():
    model = build_model("g2g-mixer", 3072, 100, frontend="patch", hidden=[64, 64, 64])
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    assert model.frontend.out_features == 512
    conv_macs = 3 * 8 * 8 * 32 * 16
    linear_macs = sum(l.nnz for _, l in sparse_layers(model)) + 64 * 100
    assert macs_per_sample(model, (3, 32, 32)) == conv_macs + linear_macs


def test_bad_model_arguments():
    with pytest.raises(G2GError, match="valid: dense, dense-matched, er, g2g-index"):
        build_model("resnet", 784, 10)
    with pytest.raises(G2GError, match="groups=8 does not divide"):
        build_model("g2g-index", 784, 10, hidden=[100])
    with pytest.raises(G2GError, match="unknown model option"):
        build_model("dense", 784, 10, width=3)
    with pytest.raises(G2GError, match="p_inter"):
        build_model("g2g-index", 784, 10, p_inter=2.0)
    with pytest.raises(G2GError, match="frontend"):
        build_model("g2g-index", 784, 10, frontend="resnet")


def _same_state(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_model_section_builds_what_its_keywords_build():
    section = ModelConfig(name="er", hidden=(32, 32), groups=4, p_inter=0.3)
    from_section = build_model("g2g-index", 64, 10, section, seed=3)
    from_keywords = build_model("g2g-index", 64, 10, hidden=[32, 32], groups=4, p_inter=0.3, seed=3)
    assert _same_state(from_section, from_keywords)  # the name argument wins over the section's
    # Keywords go over the section, through its checks.
    wider = build_model("g2g-index", 64, 10, section, hidden=[64, 64], seed=3)
    assert [b.linear.out_features for b in wider.blocks] == [64, 64]
    with pytest.raises(G2GError, match="p_inter must be a probability"):
        build_model("g2g-index", 64, 10, section, p_inter=1.5)
    with pytest.raises(G2GError, match="unknown model option"):
        build_model("g2g-index", 64, 10, section, width=3)
    with pytest.raises(G2GError, match="model must be a ModelConfig"):
        build_model("g2g-index", 64, 10, {"hidden": [32]})


def test_build_from_config_is_the_model_training_builds():
    from g2gnet.config import Config
    from g2gnet.load import untrained_model
    from g2gnet.models import build_from_config

    cfg = Config().replace(data={"dataset": "cifar100", "labels": "coarse"},
                           model={"name": "g2g-random", "hidden": [32, 32], "groups": 4}, train={"seed": 4})
    model = build_from_config(cfg, (3, 32, 32), 20)
    assert _same_state(model, build_model("g2g-random", 3072, 20, hidden=[32, 32], groups=4, seed=4))
    assert _same_state(untrained_model(cfg), model)  # load_model and the mask plot: CIFAR-100's 20 superclasses
    assert model.head.out_features == 20


def test_defaults_shared_with_the_config_are_the_configs():
    import inspect

    from g2gnet.topology import modular_mask

    params = inspect.signature(modular_mask).parameters
    defaults = ModelConfig()
    assert (params["p_intra"].default, params["p_inter"].default, params["inter_tile"].default) == \
        (defaults.p_intra, defaults.p_inter, defaults.inter_tile) == (1.0, 0.15, 1)  # SPEC §2's values


def test_g2g_mixer_blocks_start_with_the_fan_in_scaled_dense_weights():
    # sparsify keeps a dense layer's weights as they are; the mixer's G2G blocks must start as
    # every G2G layer does (SPEC §2): each row times sqrt(in / active fan-in)
    dense = build_model("mlp-mixer", 3072, 10, seed=4)
    g2g = build_model("mlp-mixer-g2g", 3072, 10, seed=4)
    layers = sparse_layers(g2g)
    assert len(layers) == 16
    for name, layer in layers:
        w, mask = dense.get_submodule(name).weight.detach(), layer.mask
        scale = (layer.in_features / mask.sum(1).clamp_min(1)).sqrt()[:, None]
        torch.testing.assert_close(layer.weight.detach(), w * mask * scale, rtol=1e-6, atol=0)
        torch.testing.assert_close(layer.bias.detach(), dense.get_submodule(name).bias.detach())


@pytest.mark.parametrize("name, option, value", [("dense", "p_inter", 0.05), ("dense", "groups", 4),
                                                 ("dense", "inter_tile", 8), ("er", "inter_tile", 8),
                                                 ("dense-matched", "inter_tile", 8), ("mlp-mixer", "groups", 4)])
def test_options_a_model_does_not_use_are_named_and_reset(name, option, value):
    # a run recorded them: a grid over them retrained the same model under other names, and
    # reports showed the copies as configurations of their own
    opts = ModelConfig(name=name, **{option: value})
    used, unused = used_options(opts)
    assert unused == [option] and getattr(used, option) == getattr(ModelConfig(), option)
    assert used_options(ModelConfig(name="g2g-index", **{option: value})) == (
        ModelConfig(name="g2g-index", **{option: value}), [])


def test_inter_tile_must_divide_the_hidden_ensembles():
    # fitting hidden sides made inter_tile=5 and 6 build the very model of 4 at 1024 wide
    with pytest.raises(G2GError, match=r"inter_tile=5 does not divide the ensembles \(128 units\).*e.g. 4"):
        build_model("g2g-mixer", 784, 10, inter_tile=5)
    model = build_model("g2g-mixer", 784, 10, inter_tile=16)  # 784 inputs = 8 x 98: the input side fits 14
    # (16 x 14 tiles are stored element-wise: the kernels' tiles are square)
    assert [layer.layout.tile for _, layer in sparse_layers(model)] == [0, 16, 16]
