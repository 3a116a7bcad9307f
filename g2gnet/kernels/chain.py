"""Consecutive G2G layers with a ReLU after each, in inference at batches the batched kernels run
(more than ``ops.INFER_MAX_BATCH`` rows): the activations stay in the kernels' layout between the
layers (transposed, in the next layer's sorted input order), so a layer boundary costs an in-place
ReLU instead of an untranspose, a new output tensor, a ReLU into another one and the next layer's
transposed gather. Every layer runs the same kernels on the same numbers as when called one by one,
so the result equals that of the modules called in turn, bit for bit.

The models decide when a stack of layers may run here (``models.MLP``: no hooks, no dropout at
work, no gradient); this module only runs it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from . import ops
from ..errors import G2GError
from .layout import Layout


def _inverse(perm: Tensor) -> Tensor:
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    return inv


def _handoff(lay: Layout, nxt: Layout | None) -> Tensor | None:
    """Where the product of ``lay`` writes its sorted output row r: the row the next layer's sorted
    input wants it in (``nxt`` None: the natural order)."""
    if nxt is None or nxt.in_perm is None:
        return lay.out_perm
    inv = _inverse(nxt.in_perm)
    return inv if lay.out_perm is None else inv[lay.out_perm]


class StackPlan:
    """A stack of SparseLinear layers bound to their layouts' versions: the layouts checked and the
    hand-offs between them worked out once (a DST update or a move makes a new version, and then a
    new plan: ``matches``)."""

    def __init__(self, layers: Sequence) -> None:
        self.packs = [layer.packed for layer in layers]
        self.versions = [p.version for p in self.packs]
        self.lays = [p.layout for p in self.packs]
        for prev, lay in zip(self.lays, self.lays[1:]):
            if prev.n_out != lay.n_in:  # (the models build matching widths)
                raise G2GError(f"a layer of {prev.n_out} outputs feeds one of {lay.n_in} inputs")
        for lay in self.lays:
            ops._check_layout(lay)
        self.dst = [_handoff(lay, nxt) for lay, nxt in zip(self.lays, [*self.lays[1:], None])]
        # The kernels add bias[dst[r]] to the row they write to dst[r]: a bias goes in re-indexed
        # to the next layer's sorted input order, as the rows do.
        self.bias_order = [nxt.in_perm for nxt in self.lays[1:]] + [None]

    def matches(self, layers: Sequence) -> bool:
        return len(layers) == len(self.packs) and all(
            layer.packed is p and p.version == v for layer, p, v in zip(layers, self.packs, self.versions))

    def __call__(self, layers: Sequence, x: Tensor) -> Tensor:
        """``relu(layers[-1](... relu(layers[0](x))))``, each layer's ``execution_path`` "native" with
        no gradient; x [N, in] float32 on the CPU, N > ``ops.INFER_MAX_BATCH``; the result [N, out]
        is contiguous, like the modules'."""
        lays = self.lays
        for layer, lay in zip(layers, lays):
            ops._check_params(layer.intra, layer.values, lay)
            if layer.bias is not None:
                ops._check("bias", layer.bias, torch.float32, (lay.n_out,))
        ops._check_args(x, layers[0].intra, layers[0].values, layers[0].bias, lays[0], layout=False)
        n = x.shape[0]
        bp = ops.padded(n)
        xs = ops.gather_t(x, lays[0].in_perm, bp, scratch=True)  # [in, Bp], the first layer's sorted input
        for i, (layer, lay, dst, order) in enumerate(zip(layers, lays, self.dst, self.bias_order)):
            out = ops._padded_rows(f"stack{i % 2}", lay.n_out, bp)  # never the buffer xs lives in
            ys = ops._bmm_into("blocks", ops._masked(layer.intra, lay), ops._blocks(lay, xs, lay.ig)).view(
                lay.n_out, bp) if lay.n_groups else None
            bias = layer.bias
            if bias is not None and order is not None:
                bias = bias.index_select(0, order)
            ops._sparse_rows(lay, False, layer.values, xs, ys, bias, dst, out)
            out.relu_()  # pad columns too: harmless, no kernel mixes the columns of a forward product
            xs = out
        return ops._untransposed(xs, n)
