"""The training loop's Adam: fused where possible, the same algorithm as torch.optim.Adam."""

import torch

from g2gnet.layers import SparseLinear
from g2gnet.optim import adam
from g2gnet.topology import group_ids, modular_mask


def _layer(seed: int) -> SparseLinear:
    g = torch.Generator().manual_seed(seed)
    og, ig = group_ids(24, 4, "random", g), group_ids(16, 4, "random", g)
    return SparseLinear(16, 24, modular_mask(og, ig, 1.0, 0.3, g), in_groups=ig, out_groups=og, generator=g)


def test_fused_adam_matches_reference_adam_and_keeps_mask():
    a, b = _layer(0), _layer(0)
    opt_a = adam(a.parameters(), lr=1e-2, weight_decay=1e-4)
    opt_b = torch.optim.Adam(b.parameters(), lr=1e-2, weight_decay=1e-4, foreach=False)
    assert opt_a.defaults["fused"] and not opt_b.defaults["fused"]
    x = torch.randn(5, 16, generator=torch.Generator().manual_seed(1))
    for _ in range(5):
        for layer, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            layer(x).square().sum().backward()
            opt.step()
    torch.testing.assert_close(a.weight, b.weight, rtol=1e-5, atol=1e-6)
    assert not a.weight[~a.mask].any()  # zero gradient and zero weight off the mask stay zero


def test_adam_falls_back_when_fused_is_unsupported():
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))
    assert not adam([p], lr=1e-3).defaults["fused"]
