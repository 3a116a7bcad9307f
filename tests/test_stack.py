"""The MLP's hidden blocks run as one (kernels/chain.py): at most ``infer.INFER_MAX_BATCH`` rows without
a gradient, the inference kernels' chain in one native call; otherwise the batched kernels' stack, in
the kernels' layout from one layer to the next. Both give the numbers of the modules called in turn,
and run only when calling the modules would do nothing more (no hooks, no dropout at work)."""

import copy
import pickle
import threading

import pytest
import torch

from g2gnet import build_model, sparse_layers
from g2gnet.errors import G2GError
from g2gnet.kernels import infer, native
from g2gnet.topology import modular_mask

needs_native = pytest.mark.skipif(not native.available(), reason=f"native kernels unavailable: {native.error()}")
B = infer.INFER_MAX_BATCH + 1  # the smallest batch the batched kernels' stack serves
SMALL = [1, 5, infer.INFER_MAX_BATCH]  # the inference kernels' chain


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
@pytest.mark.parametrize("batch", [*SMALL, B, 64])
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
@pytest.mark.parametrize("batch", [3, 32])
def test_stack_follows_a_mask_change_and_a_copy(batch):
    model = fast(build_model("g2g-mixer", 48, 5, seed=0, hidden=[128] * 3, groups=4)).eval()
    x = torch.randn(batch, 48)
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
        assert "_stack_plan" not in twin.__dict__ and "_infer_chains" not in twin.__dict__  # (made for `model`)
        assert torch.equal(twin(x), after)
        twin = pickle.loads(pickle.dumps(model))
        assert torch.equal(twin(x), after)


@needs_native
def test_stack_steps_aside_whenever_the_modules_would_do_more():
    model = fast(build_model("g2g-mixer", 48, 5, seed=0, hidden=[128] * 3, groups=4, dropout=0.5))
    x = torch.randn(32, 48)
    with torch.no_grad():
        assert not stacked(model, x)  # train(): dropout at work
        model.eval()
        assert stacked(model, x) and stacked(model, x[:1])
        assert not stacked(model, x.double()) and not stacked(model, x[:1].double())
    for batch in (1, 32):
        xb = x[:batch]
        seen = []
        handle = model.blocks[1].act.register_forward_hook(lambda m, i, o: seen.append(o))
        with torch.inference_mode():
            assert not stacked(model, xb)
            assert torch.equal(model(xb), one_by_one(model, xb))
        assert len(seen) == 2  # the hook ran at both calls
        handle.remove()
        handle = torch.nn.modules.module.register_module_forward_pre_hook(lambda m, i: None)
        try:
            with torch.inference_mode():
                assert not stacked(model, xb)
        finally:
            handle.remove()
    model.blocks[0].linear.fast = False  # the reference path for one layer: the modules
    with torch.inference_mode():
        assert not stacked(model, x) and not stacked(model, x[:1])
    model.blocks[0].linear.fast = True
    model.blocks[2].linear.bias.requires_grad_(False)
    with torch.enable_grad():  # training at batch 1: no inference chain; the layers' native path stacks
        assert model._stack_path(x[:1]) == "native"
        model.blocks[1].linear.fast = False
        assert not stacked(model, x[:1])


@needs_native
@pytest.mark.parametrize("options", [{}, {"inter_tile": 8}])
def test_batched_stack_relu_keeps_nan_as_torch_relu(options):
    model = fast(build_model("g2g-random", 48, 5, seed=4, hidden=[128] * 3, groups=4, **options)).eval()
    x = torch.randn(B + 3, 48)
    with torch.no_grad():
        model.blocks[1].linear.bias[7] = float("nan")  # the ReLU fused into the kernels' store keeps NaN
    for mode in (torch.inference_mode(), torch.enable_grad()):
        with mode:
            assert stacked(model, x)
            out, ref = model(x), one_by_one(model, x)
            assert out.isnan().all() and ref.isnan().all()


@needs_native
def test_inference_chain_keeps_nan_reads_strided_rows_and_serves_threads():
    model = fast(build_model("g2g-mixer", 48, 5, seed=4, hidden=[128] * 3, groups=4)).eval()
    x = torch.randn(6, 96)[:, :48]  # rows 96 floats apart
    with torch.inference_mode():
        assert torch.equal(model(x), one_by_one(model, x))
        assert torch.equal(model(x[:, ::1].t().contiguous().t()), one_by_one(model, x))  # columns apart
        with torch.no_grad():
            model.blocks[0].linear.bias[3] = float("nan")  # the chain's ReLU keeps NaN, as torch.relu does
        out = model(x)
        assert out.isnan().all() and one_by_one(model, x).isnan().all()
        with torch.no_grad():
            model.blocks[0].linear.bias[3] = 0.0
        ref = one_by_one(model, x[:2])
        errors = []

        def serve():
            with torch.inference_mode():
                for _ in range(200):
                    if not torch.equal(model(x[:2]), ref):
                        errors.append("differs")
        threads = [threading.Thread(target=serve) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and len(model.__dict__["_infer_chains"]) >= 2  # one chain per thread


# -- training: the stack as one autograd node ---------------------------------------------------------
def grads(model, x, y, forward):
    model.zero_grad(set_to_none=True)
    if x.grad is not None:
        x.grad = None
    out = forward(x)
    torch.nn.functional.cross_entropy(out, y).backward()
    return out.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}, x.grad


def assert_same_gradients(model, x, y):
    """Output, input gradient and every weight gradient bit for bit; a bias gradient sums the batch
    in another order (the kernels' layout), so to float rounding."""
    assert model.stacked(x)
    out, g, gx = grads(model, x, y, model)
    ref_out, ref_g, ref_gx = grads(model, x, y, lambda t: one_by_one(model, t))
    assert torch.equal(out, ref_out)
    assert (gx is None) == (ref_gx is None) and (gx is None or torch.equal(gx, ref_gx))
    assert g.keys() == ref_g.keys()
    for name in g:
        if name.startswith("blocks.") and name.endswith(".bias"):
            torch.testing.assert_close(g[name], ref_g[name], rtol=1e-6, atol=1e-7)
        else:
            assert torch.equal(g[name], ref_g[name]), name


@needs_native
@pytest.mark.parametrize("name,options", [
    ("g2g-mixer", {}), ("g2g-random", {"inter_tile": 8}), ("er", {}), ("g2g-mixer", {"hidden": [96, 64, 128]}),
])
def test_training_stack_gives_the_modules_gradients(name, options):
    model = fast(build_model(name, 48, 5, seed=1, **{"hidden": [128] * 3, "groups": 4, **options}))
    with torch.no_grad():
        for _, layer in sparse_layers(model):
            layer.bias.uniform_(-1, 1)
    x, y = torch.randn(40, 48), torch.randint(0, 5, (40,))
    assert_same_gradients(model, x, y)
    assert_same_gradients(model, x.clone().requires_grad_(), y)  # the first layer's input gradient too


@needs_native
@pytest.mark.parametrize("batch", [1, 40])
def test_training_stack_takes_an_output_gradient_of_any_strides(batch):
    """The stack's output gradient as autograd hands it over: the gradient of ``out.sum(0)`` is
    expanded, strides (0, 1), which at batch 1 is "contiguous" (its one row's stride is never used);
    the last ReLU's backward reads the output with the gradient's strides."""
    model = fast(build_model("g2g-mixer", 48, 5, seed=1, hidden=[128] * 3, groups=4))
    model.head = torch.nn.Identity()
    g = torch.Generator().manual_seed(batch)
    x, w = torch.randn(batch, 48, generator=g), torch.randn(128, generator=g)
    got = []
    for forward in (model, lambda t: one_by_one(model, t)):
        model.zero_grad(set_to_none=True)
        (forward(x).sum(0) * w).sum().backward()
        got.append({n: p.grad for n, p in model.named_parameters()})
    assert model.stacked(x)
    for name in got[0]:  # as assert_same_gradients: a bias gradient sums the batch in another order
        if name.endswith(".bias"):
            torch.testing.assert_close(got[0][name], got[1][name], rtol=1e-5, atol=1e-5, msg=name)
        else:
            assert torch.equal(got[0][name], got[1][name]), name


@needs_native
def test_training_stack_feeds_a_conv_front_end_and_skips_frozen_weights():
    model = fast(build_model("g2g-mixer", 3 * 16 * 16, 5, input_shape=(3, 16, 16), seed=0, hidden=[128] * 3,
                             groups=4, frontend="patch"))
    x, y = torch.randn(24, 3, 16, 16), torch.randint(0, 5, (24,))
    assert_same_gradients(model, x, y)  # the conv's gradients come through the stack's input gradient
    model.blocks[1].linear.values.requires_grad_(False)
    model.blocks[2].linear.bias.requires_grad_(False)
    _, g, _ = grads(model, x, y, model)
    assert "blocks.1.linear.packed.values" not in g and "blocks.2.linear.bias" not in g
    assert "blocks.1.linear.packed.intra" in g and "blocks.2.linear.packed.values" in g
    assert_same_gradients(model, x, y)
    model.blocks[1].linear.intra.requires_grad_(False)  # a layer with no weight gradient: its input's alone
    _, g, _ = grads(model, x, y, model)
    assert not any(k.startswith("blocks.1.linear.packed") for k in g) and "blocks.0.linear.packed.values" in g
    assert_same_gradients(model, x, y)


@needs_native
def test_training_stack_accumulates_and_steps_like_the_modules():
    torch.manual_seed(0)
    models = [fast(build_model("g2g-mixer", 48, 5, seed=2, hidden=[128] * 3, groups=4)) for _ in range(2)]
    opts = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in models]
    x, y = torch.randn(32, 48), torch.randint(0, 5, (32,))
    for _ in range(3):
        for m, opt, f in zip(models, opts, (models[0], lambda t: one_by_one(models[1], t))):
            opt.zero_grad()
            for _ in range(2):  # gradient accumulation over two backward passes
                torch.nn.functional.cross_entropy(f(x), y).backward()
            opt.step()
    for (n, a), (_, b) in zip(models[0].named_parameters(), models[1].named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=n)


@needs_native
def test_training_stack_steps_aside_for_dropout_hooks_and_autocast():
    model = fast(build_model("g2g-mixer", 48, 5, seed=0, hidden=[128] * 3, groups=4, dropout=0.5))
    x = torch.randn(32, 48)
    assert not stacked(model, x)  # dropout at work
    model = fast(build_model("g2g-mixer", 48, 5, seed=0, hidden=[128] * 3, groups=4))
    assert model.training and stacked(model, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not stacked(model, x)
    handle = model.blocks[0].linear.register_forward_hook(lambda m, i, o: None)  # e.g. DST's recorder
    assert not stacked(model, x)
    handle.remove()
    assert stacked(model, x)


@needs_native
def test_dst_training_stacks_outside_its_recording_window_and_rewires_as_the_modules_do():
    from g2gnet.dst import DynamicSparsity

    def run(stack: bool):
        model = fast(build_model("g2g-mixer", 48, 5, seed=3, hidden=[128] * 3, groups=4))
        if not stack:  # a hook on the blocks: the modules run one by one at every step
            model.blocks.register_forward_pre_hook(lambda m, i: None)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        dst = DynamicSparsity(model, opt, prune="hebbian", grow="gradient", interval=4, window=1, fraction=0.2)
        stacked_steps = []
        for step in range(8):
            g = torch.Generator().manual_seed(step)
            x, y = torch.randn(32, 48, generator=g), torch.randint(0, 5, (32,), generator=g)
            stacked_steps.append(stacked(model, x))
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            dst.step()
        return model, stacked_steps

    model, steps = run(stack=True)
    ref, ref_steps = run(stack=False)
    assert steps == [True, True, True, False, True, True, True, False]  # the recorded batch: one by one
    assert not any(ref_steps)
    for (name, a), (_, b) in zip(model.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    for (_, a), (_, b) in zip(sparse_layers(model), sparse_layers(ref)):
        assert torch.equal(a.mask, b.mask)  # the same links pruned and grown at both updates


@needs_native
@pytest.mark.parametrize("batch", [8, 32])
def test_stacks_step_aside_for_backward_hooks_and_other_block_modules(batch):
    model = fast(build_model("g2g-mixer", 48, 5, seed=0, hidden=[128] * 3, groups=4))
    x, y = torch.randn(batch, 48), torch.randint(0, 5, (batch,))
    calls = []
    handle = model.blocks[1].linear.register_full_backward_hook(lambda m, gi, go: calls.append(1))
    assert not stacked(model, x)  # the stack's one autograd node would skip the layer's backward hook
    torch.nn.functional.cross_entropy(model(x), y).backward()
    assert calls == [1]
    handle.remove()
    handle = torch.nn.modules.module.register_module_full_backward_hook(lambda m, gi, go: None)
    try:
        assert not stacked(model, x)
    finally:
        handle.remove()
    assert stacked(model, x)
    model.blocks[1].drop = torch.nn.Tanh()  # not an identity: the modules run
    model.eval()
    with torch.inference_mode():
        assert not stacked(model, x)
        assert torch.equal(model(x), one_by_one(model, x))
        model.blocks[1].drop = torch.nn.Dropout(0.3).eval()  # in eval mode, an identity
        assert stacked(model, x) and torch.equal(model(x), one_by_one(model, x))


@needs_native
def test_a_parameter_whose_data_is_swapped_is_checked_again():
    model = fast(build_model("g2g-mixer", 48, 5, seed=0, hidden=[128] * 3, groups=4)).eval()
    x = torch.randn(1, 48)
    with torch.inference_mode():
        model(x)  # the chain has set its pointers
    intra = model.blocks[1].linear.packed.intra
    with torch.no_grad():
        intra.data = intra.data.transpose(1, 2)  # the same memory, new strides, the same version
    for run in (lambda: model(x), lambda: model.blocks[1].linear(torch.randn(1, 128))):
        with torch.inference_mode(), pytest.raises(G2GError, match="contiguous"):
            run()
