"""The MLP's stacked inference (kernels/chain.py): the hidden blocks run in the kernels' layout from
one layer to the next, with the same numbers as calling the modules in turn, and only when calling
the modules would do nothing more (no hooks, no dropout at work, no gradient)."""

import copy

import pytest
import torch

from g2gnet import build_model, sparse_layers
from g2gnet.kernels import native, ops
from g2gnet.topology import modular_mask

needs_native = pytest.mark.skipif(not native.available(), reason=f"native kernels unavailable: {native.error()}")
B = ops.INFER_MAX_BATCH + 1  # the smallest batch the stack runs at


def fast(model):
    """Layers this small take the masked reference on their own; the stack is for the native path."""
    for _, layer in sparse_layers(model):
        layer.fast = True
    return model


def one_by_one(model, x):
    """The modules called in turn (what MLP.forward did before the stack)."""
    return model.head(model.blocks(model.frontend(x).flatten(1)))


def stacked(model, x) -> bool:
    return model.stacked(x)


@needs_native
@pytest.mark.parametrize("name,options", [
    ("g2g-mixer", {}), ("g2g-index", {}), ("g2g-random", {"inter_tile": 8}), ("er", {}),
    ("g2g-mixer", {"hidden": [96, 64, 128]}),  # unequal widths: every hand-off re-indexes
])
@pytest.mark.parametrize("batch", [B, 64])
def test_stack_equals_the_modules_called_in_turn(name, options, batch):
    opts = {"hidden": [128] * 3, "groups": 4, **options}
    model = fast(build_model(name, 48, 5, seed=1, **opts)).eval()
    with torch.no_grad():  # nonzero biases everywhere: the hand-off re-indexes them with the rows
        for _, layer in sparse_layers(model):
            layer.bias.uniform_(-1, 1)
    x = torch.randn(batch, 48)
    with torch.inference_mode():
        assert stacked(model, x)
        assert torch.equal(model(x), one_by_one(model, x))
    with torch.no_grad():
        assert stacked(model, x)
        assert torch.equal(model(x), one_by_one(model, x))


@needs_native
def test_stack_follows_a_mask_change_and_a_copy():
    model = fast(build_model("g2g-mixer", 48, 5, seed=0, hidden=[128] * 3, groups=4)).eval()
    x = torch.randn(32, 48)
    with torch.inference_mode():
        before = model(x)
    layer = model.blocks[1].linear
    g = torch.Generator().manual_seed(3)
    mask = modular_mask(layer.out_groups, layer.in_groups, 1.0, 0.3, g)
    with torch.no_grad():
        layer.set_mask_(mask)  # a new layout (and values) in the middle of the stack
        layer.values.normal_(generator=g)
    with torch.inference_mode():
        after = model(x)
        assert stacked(model, x) and torch.equal(after, one_by_one(model, x))
        assert not torch.equal(after, before)
        twin = copy.deepcopy(model)
        assert "_stack_plan" not in twin.__dict__  # a plan belongs to the modules it was made for
        assert torch.equal(twin(x), after)


@needs_native
def test_stack_steps_aside_whenever_the_modules_would_do_more():
    model = fast(build_model("g2g-mixer", 48, 5, seed=0, hidden=[128] * 3, groups=4, dropout=0.5))
    x = torch.randn(32, 48)
    with torch.no_grad():
        assert not stacked(model, x)  # train(): dropout at work
        model.eval()
        assert stacked(model, x)
        assert not stacked(model, x[:ops.INFER_MAX_BATCH])  # the inference kernel's batches
        assert not stacked(model, x.double())
    assert not stacked(model, x)  # autograd records the call
    seen = []
    handle = model.blocks[1].act.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.inference_mode():
        assert not stacked(model, x)
        assert torch.equal(model(x), one_by_one(model, x))
    assert len(seen) == 2  # the hook ran at both calls
    handle.remove()
    handle = torch.nn.modules.module.register_module_forward_pre_hook(lambda m, i: None)
    try:
        with torch.inference_mode():
            assert not stacked(model, x)
    finally:
        handle.remove()
    model.blocks[0].linear.fast = False  # the reference path for one layer: the modules
    with torch.inference_mode():
        assert not stacked(model, x)
