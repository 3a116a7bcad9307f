"""Consecutive G2G layers with a ReLU after each, run as one.

At most ``infer.INFER_MAX_BATCH`` rows without a gradient (serving): ``InferChain`` runs every layer's
inference kernel, its ReLU included, in one native call, so no Python runs between the layers (at
batch 1 that Python, finding its objects evicted by the weights each kernel streamed, cost about as
much as the kernels). Same kernels, same numbers as the modules called in turn.

More rows, or a gradient to record (``StackPlan``, on the batched kernels): the activations stay
in the kernels' layout between the layers (transposed, in the next layer's sorted input order), so
a layer boundary costs nothing of its own (the kernels apply the ReLU as they store each row)
instead of an untranspose, a new output tensor, a ReLU into another one and the next layer's
transposed gather; in training the backward hands each input gradient to the layer before the same
way (a ReLU mask and a row permutation instead of an untranspose and a transposed gather), and
autograd records the whole stack as one node. Every layer runs the same kernels on the same numbers
as when called one by one, so outputs and the gradients of inputs and weights equal those of the
modules called in turn bit for bit; a bias gradient sums the batch in another order (to rounding).

The models decide when a stack of layers may run here (``models.MLP``: no hooks, no dropout at
work, no autocast); this module only runs it.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence

import torch
from torch import Tensor

from ..malloc import huge
from . import dispatch, infer, native, ops
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


def _same(packs: Sequence, versions: Sequence[int], layers: Sequence) -> bool:
    """Whether ``layers`` are the layers whose packed weights and layout versions a plan was built on."""
    return len(layers) == len(packs) and all(
        layer._modules["packed"] is p and p.version == v for layer, p, v in zip(layers, packs, versions))


def _check_widths(lays: Sequence[Layout]) -> None:
    for prev, lay in zip(lays, lays[1:]):
        if prev.n_out != lay.n_in:  # (the models build matching widths)
            raise G2GError(f"a layer of {prev.n_out} outputs feeds one of {lay.n_in} inputs")


class InferChain:
    """Layers served at most ``infer.INFER_MAX_BATCH`` rows at a time, for one thread (its kernel
    arguments and hidden activations are its own): each layer's ``infer._InferPlan`` with the ReLU on,
    writing into a buffer the next one reads, all run by one ``native.infer_chain`` call."""

    def __init__(self, layers: Sequence) -> None:
        self.packs = [layer.packed for layer in layers]
        self.versions = [p.version for p in self.packs]
        self.plans = [infer._InferPlan(p, relu=True) for p in self.packs]
        lays = [plan.lay for plan in self.plans]
        _check_widths(lays)
        with torch.inference_mode(False):  # (kept between calls: never an inference tensor)
            self.hidden = [torch.empty(infer.INFER_MAX_BATCH, lay.n_out) for lay in lays[:-1]]
        for plan, nxt, h in zip(self.plans, self.plans[1:], self.hidden):
            plan.args.y = nxt.args.x = h.data_ptr()
        self.list = (ctypes.c_void_p * len(self.plans))(*[ctypes.addressof(plan.args) for plan in self.plans])

    def matches(self, layers: Sequence) -> bool:
        return _same(self.packs, self.versions, layers)

    def __call__(self, layers: Sequence, x: Tensor) -> Tensor:
        """``relu(layers[-1](... relu(layers[0](x))))``, every layer's path "infer"; x [N <=
        ``infer.INFER_MAX_BATCH``, in] float32 on the CPU; the result [N, out] is a new tensor."""
        plans = self.plans
        x, ldx = plans[0].rows(x)
        n = x.shape[0]
        for layer, plan in zip(layers, plans):
            params = layer._modules["packed"]._parameters
            plan.bind(params["intra"], params["values"], layer._parameters.get("bias"), n, ldx)
            ldx = plan.lay.n_out  # the next layer reads a contiguous hidden buffer
        y = torch.empty(n, plans[-1].lay.n_out)
        plans[0].args.x, plans[-1].args.y = x.data_ptr(), y.data_ptr()
        native.infer_chain(self.list, len(plans))
        return y


def infer_chain(owner: dict, layers: Sequence) -> InferChain:
    """The ``InferChain`` of ``layers`` for this thread, kept in ``owner`` (a module's ``__dict__``)
    until a layer's layout changes (``stack_plan``'s twin; a chain's ctypes structs are per thread)."""
    chains = owner.setdefault("_infer_chains", {})
    key = threading.get_ident()
    chain = chains.get(key)
    if chain is None or not chain.matches(layers):
        chain = chains[key] = InferChain(layers)
    return chain


def stack_plan(owner: dict, layers: Sequence) -> StackPlan:
    """The ``StackPlan`` of ``layers``, kept in ``owner`` (a module's ``__dict__``) until a layer's
    layout changes."""
    plan = owner.get("_stack_plan")
    if plan is None or not plan.matches(layers):
        plan = owner["_stack_plan"] = StackPlan(layers)
    return plan


class StackPlan:
    """A stack of SparseLinear layers bound to their layouts' versions: the layouts checked and the
    hand-offs between them worked out once (a DST update or a move makes a new version, and then a
    new plan: ``matches``)."""

    def __init__(self, layers: Sequence) -> None:
        self.packs = [layer.packed for layer in layers]
        self.versions = [p.version for p in self.packs]
        self.lays = [p.layout for p in self.packs]
        _check_widths(self.lays)
        for lay in self.lays:
            ops._check_layout(lay)
        self.dst = [_handoff(lay, nxt) for lay, nxt in zip(self.lays, [*self.lays[1:], None])]
        # The kernels add bias[dst[r]] to the row they write to dst[r]: a bias goes in re-indexed
        # to the next layer's sorted input order, as the rows do.
        self.bias_order = [nxt.in_perm for nxt in self.lays[1:]] + [None]

    def matches(self, layers: Sequence) -> bool:
        return _same(self.packs, self.versions, layers)

    def __call__(self, layers: Sequence, x: Tensor) -> Tensor:
        """``relu(layers[-1](... relu(layers[0](x))))``, each layer's ``execution_path`` "native"; x
        [N, in] float32 on the CPU; the result [N, out] is contiguous, like the modules'. Without a
        gradient to record (inference) N > ``infer.INFER_MAX_BATCH``; with one, autograd records the
        stack as one node (``_StackFunction``)."""
        params = []
        for layer, lay in zip(layers, self.lays):
            p = layer._modules["packed"]._parameters  # (not the properties: module lookups cost ~1 µs)
            intra, values, bias = p["intra"], p["values"], layer._parameters.get("bias")
            ops.check_params(intra, values, bias, lay)
            params += [intra, values, bias]
        ops.check_x(x, self.lays[0])
        # Autograd records the stack iff it records some layer on x (a later layer's input needs a
        # gradient iff x or an earlier layer's parameter does).
        if any(dispatch._needs_grad(layer, x) for layer in layers):
            return _StackFunction.apply(self, x, *params)
        return self.forward(x, params, keep=False)[0]

    def forward(self, x: Tensor, params: Sequence[Tensor | None], keep: bool) -> tuple[Tensor, list[Tensor]]:
        """(y, the layers' sorted transposed inputs). ``keep``: those inputs are tensors of their own
        (autograd saves them), else workspaces."""
        n = x.shape[0]
        bp = ops.padded(n)
        xs = ops.gather_t(x, self.lays[0].in_perm, bp, scratch=not keep)  # [in, Bp], sorted input
        inputs = [xs]
        for i, (lay, dst, order) in enumerate(zip(self.lays, self.dst, self.bias_order)):
            intra, values, bias = params[3 * i:3 * i + 3]
            last = i == len(self.lays) - 1
            if keep and not last:  # the next layer's saved input
                out = huge(torch.empty(lay.n_out, ops.row_stride(bp)))[:, :bp]
            else:
                out = ops._padded_rows(f"stack{i % 2}", lay.n_out, bp)  # never the buffer xs lives in
            if bias is not None and order is not None:
                bias = bias.index_select(0, order)
            # ReLU as the rows are stored, pad columns too: harmless, no kernel mixes the columns of a
            # forward product (against a separate relu_ pass: the whole model's inference 1.00-1.07x,
            # benchmarks/relu_store_ab.py).
            # Training (keep) leaves the gather's workspace free: the blocks' product goes there, so
            # that no "blocks" workspace stays resident beside the stack's (784-4096x3-10: 4 MiB).
            ops._product(lay, False, intra, values, xs, bias, dst, out, relu=True,
                         scratch="gather" if keep else "blocks")
            xs = out
            if not last:
                inputs.append(out)
        return ops._untransposed(xs, n), inputs

    def backward(self, gy: Tensor, y: Tensor, inputs: Sequence[Tensor], params: Sequence[Tensor | None],
                 needs: Sequence[bool], need_x: bool) -> list[Tensor | None]:
        """The gradients of x and of every (intra, values, bias), as the layers' own backward and the
        ReLUs' would give them, with each layer's input gradient handed to the layer before in its
        sorted output order, ReLU-masked, without leaving the kernels' layout."""
        n = gy.shape[0]
        bp = ops.padded(n)
        nt = torch.get_num_threads()
        # [out, Bp] in sorted output order, through the last ReLU's backward (as nn.ReLU's: threshold_backward)
        gys = ops.gather_t(gy, self.lays[-1].out_perm, bp, scratch=True, relu_out=y)
        held = "gather"  # the workspace gys is in
        grads: list[Tensor | None] = [None] * (1 + len(params))
        for i in range(len(self.lays) - 1, -1, -1):
            lay, xs = self.lays[i], inputs[i]
            intra, values, bias = params[3 * i:3 * i + 3]
            need_i, need_v, need_b = needs[3 * i:3 * i + 3]
            if need_b and bias is not None:
                gb = torch.empty_like(bias)
                gb[lay.out_perm if lay.out_perm is not None else slice(None)] = gys[:, :n].sum(1)
                grads[3 + 3 * i] = gb
            gi = gv = None
            if need_i or need_v:
                gi, gv = ops._weight_grad_buffers(lay, values)
                grads[1 + 3 * i], grads[2 + 3 * i] = (gi if need_i else None), (gv if need_v else None)
            gxs = ops._padded_rows("gx", lay.n_in, bp) if i > 0 or need_x else None
            dst = lay.in_perm if i == 0 else None  # else this layer's sorted input order
            # Two workspaces take turns (the gather's and the forward's "stack0", free in the backward):
            # gys is in one ("held"); the other takes the blocks' product of the input gradient, then
            # the gradient handed down (784-4096x3-10: no separate pair for the gradients nor a
            # "blocks" workspace resident, 12.5 MiB).
            free = "stack0" if held == "gather" else "gather"
            ops._grads_into(lay, intra, values, gys, xs, dst, gxs, gi, gv, nt, scratch=free)
            if gxs is None:
                break
            if i == 0:
                grads[0] = ops._untransposed(gxs, n)
                break
            # Row r of the layer before went to row dst[r] of this one's input: take it back, through
            # the backward of the ReLU between them (xs is its output).
            held = free
            gys = ops._padded_rows(held, self.lays[i - 1].n_out, bp)
            native.gather_t(gxs, bp, 1, gxs.stride(0), self.dst[i - 1], gys.shape[0], gys, gys.stride(0), nt,
                            relu_out=xs)
        return grads


class _StackFunction(torch.autograd.Function):
    """A training stack as one autograd node: the layers' inputs are saved in the kernels' layout
    (the one copy each layer's own forward would save; the ReLUs' outputs are not kept beside them)."""

    @staticmethod
    def forward(ctx, plan: StackPlan, x: Tensor, *params: Tensor | None) -> Tensor:
        y, inputs = plan.forward(x, params, keep=True)
        ctx.plan, ctx.n_inputs = plan, len(inputs)
        ctx.save_for_backward(y, *inputs, *[p if p is not None else torch.empty(0) for p in params])
        ctx.has = [p is not None for p in params]
        return y

    @staticmethod
    def backward(ctx, gy: Tensor):
        y, *rest = ctx.saved_tensors
        inputs, params = rest[:ctx.n_inputs], [p if h else None for p, h in zip(rest[ctx.n_inputs:], ctx.has)]
        needs = ctx.needs_input_grad[2:]
        ops.refuse_create_graph()
        grads = ctx.plan.backward(gy.contiguous(), y, inputs, params, needs, ctx.needs_input_grad[1])
        return (None, *grads)
