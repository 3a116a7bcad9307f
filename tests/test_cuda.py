"""CUDA (skipped without a GPU): the G2G layer on the GPU against the CPU reference, every model
and DST rule training there, autocast, and the CLI end to end with data held on the GPU."""

from __future__ import annotations

import json

import pytest
import torch

from g2gnet import SparseLinear, build_model, MODELS
from g2gnet.cli import main
from g2gnet.dst import GROW, PRUNE, DynamicSparsity
from g2gnet.optim import adam
from g2gnet.topology import group_ids, modular_mask
from g2gnet.train import train_step

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _layer(n: int = 512, seed: int = 0) -> SparseLinear:
    g = torch.Generator().manual_seed(seed)
    og, ig = group_ids(n, 8, "random", g), group_ids(n, 8, "random", g)
    return SparseLinear(n, n, modular_mask(og, ig, 1.0, 0.15, g), in_groups=ig, out_groups=og, generator=g)


@pytest.mark.parametrize("fast", [None, True, False])
def test_layer_on_cuda_matches_cpu_reference(fast):
    cpu = _layer()
    cpu.fast = False
    gpu = _layer().cuda()
    gpu.fast = fast
    x = torch.randn(64, 512, requires_grad=True)
    xg = x.detach().cuda().requires_grad_(True)
    cpu(x).square().sum().backward()
    gpu(xg).square().sum().backward()
    for a, b in ((x.grad, xg.grad), (cpu.weight.grad, gpu.weight.grad), (cpu.bias.grad, gpu.bias.grad)):
        assert ((a - b.cpu()).norm() / a.norm()).item() < 1e-4
    assert not gpu.weight.grad[~gpu.mask].any()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_on_cuda(dtype):
    layer = _layer().cuda()
    x = torch.randn(64, 512, device="cuda")
    ref = layer(x)
    with torch.autocast("cuda", dtype=dtype):
        out = layer(x)
    out.float().sum().backward()
    assert torch.isfinite(out.float()).all() and ((out.float() - ref).norm() / ref.norm()).item() < 0.02


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_trains_on_cuda(name):
    model = build_model(name, 3072, 10, hidden=[64, 64, 64], seed=0).cuda()
    opt = adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(32, 3, 32, 32, device="cuda"), torch.randint(0, 10, (32,), device="cuda")
    losses = [train_step(model, opt, x, y)[0].item() for _ in range(5)]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("prune", list(PRUNE))
@pytest.mark.parametrize("grow", list(GROW))
def test_dst_rules_on_cuda(prune, grow):
    model = build_model("g2g-mixer", 64, 10, hidden=[32, 32], groups=4, seed=0).cuda()
    opt = adam(model.parameters(), lr=1e-3)
    dst = DynamicSparsity(model, opt, prune=prune, grow=grow, interval=2, fraction=0.2, check=True)
    before = [l.nnz for l in dst.layers.values()]
    for step in range(6):
        g = torch.Generator().manual_seed(step)
        x, y = torch.randn(16, 64, generator=g).cuda(), torch.randint(0, 10, (16,), generator=g).cuda()
        train_step(model, opt, x, y)
        dst.step()
    assert [l.nnz for l in dst.layers.values()] == before


def test_cli_train_on_cuda(tiny_fmnist, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "fashion-mnist", "--data-dir", str(tiny_fmnist), "--out", str(out),
                 "--hidden", "32,32", "--groups", "4", "--batch-size", "64", "--epochs", "3", "--device", "cuda",
                 "--dst", "magnitude:hebbian", "--dst-interval", "4"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    env = json.loads((out / "env.json").read_text())
    # 10 classes: chance is 0.1 (the H200 reached 0.40 after 2 epochs of this run)
    assert summary["test_acc"] > 0.25 and env["device"].startswith("cuda") and "cuda_device" in env
