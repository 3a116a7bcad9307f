"""``PackedWeight``: the active connections of a sparse [out, in] weight, stored packed (SPEC §7).

Storage: ``intra`` [G, og, ig] holds the dense diagonal blocks of the ensembles (rows and columns
sorted by ensemble; entries of a block that the mask turns off are held at 0), ``values`` every
other active connection in layout order (CSR rows, or T x T tiles), followed by an unused tail
of zeros when DST has reserved room (``capacity``). ``Layout`` (kernels/layout.py) says where each
entry lives; its tensors are this module's (non-persistent) buffers, so ``.to()`` moves them.

The layout is a function of three things this module saves in its state dict: the mask, the
ensembles (``out_groups``, ``in_groups``) and whether their blocks are stored dense (``blocks``).
The last two are decided once, when the weight is created, and never re-decided: loading a
checkpoint rebuilds exactly the layout it was saved with, so optimizer state (kept in layout
order) lands on the connections it belongs to, whatever DST did to the mask (SPEC §9).

State dict: ``mask_bits`` (uint8, 1 bit per position), ``weight_values`` (the active weights in
row-major order: layout-free), ``out_groups``/``in_groups`` (when known), ``blocks`` and
``in_features`` (the bits' rows are padded to whole bytes, so without it a checkpoint of a layer up
to 7 inputs narrower would load into this one; checkpoints before it are checked by their padding
bits only).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from .errors import G2GError
from .kernels.layout import Layout, blocks_pay, build_layout, check_block_groups, pack_bits, unpack_bits
from .ensembles import find_groups
from .malloc import limit_retention

_INIT_ROWS = 512  # rows scaled at once by the init (bounds its temporary memory)


def _normal_tensors():
    """Caches made during a forward under ``torch.inference_mode`` must still serve training
    later: create them as normal tensors (an inference tensor cannot be saved for backward)."""
    return torch.inference_mode(False)


def describe(x) -> str:
    """A tensor's shape and dtype, or the repr of anything else (for error messages)."""
    return f"{tuple(x.shape)} {x.dtype}" if isinstance(x, Tensor) else repr(x)


def check_mask(mask, shape: tuple[int, int], what: str = "mask") -> None:
    if not isinstance(mask, Tensor):
        raise G2GError(f"{what} must be a bool tensor, got {type(mask).__name__}")
    if tuple(mask.shape) != shape:
        raise G2GError(f"{what} must have shape {shape} (out, in), got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise G2GError(f"{what} must be a bool tensor, got {mask.dtype}")
    if mask.device.type == "meta":
        raise G2GError(f"{what} is on the meta device; a sparse layer needs its mask's values")


def check_group_ids(ids, n: int, what: str) -> None:
    if ids is None:
        return
    if not isinstance(ids, Tensor) or tuple(ids.shape) != (n,) or ids.is_floating_point() or ids.dtype == torch.bool:
        raise G2GError(f"{what} must be an integer tensor of shape ({n},), got {describe(ids)}")
    if ids.numel() and int(ids.min()) < 0:
        raise G2GError(f"{what} must be non-negative group ids, got a minimum of {int(ids.min())}")


class PackedWeight(nn.Module):
    """The active connections of an [out, in] weight, packed as the layout says.

    Args:
        mask: BoolTensor[out, in], the active connections.
        out_groups, in_groups: LongTensor group ids of the outputs and inputs (G2G layers), or
            None: then the ensembles are looked for in ``mask`` (``ensembles.find_groups``).
        blocks: store the ensembles' diagonal blocks dense; None = decide from the mask
            (``kernels.layout.blocks_pay``). Decided here, once.
    """

    def __init__(self, mask: Tensor, out_groups: Tensor | None = None, in_groups: Tensor | None = None,
                 blocks: bool | None = None) -> None:
        super().__init__()
        limit_retention()  # the first sparse weight of the process: freed step buffers go back (g2gnet.malloc)
        if not isinstance(mask, Tensor) or mask.dim() != 2:
            raise G2GError(f"mask must be a bool [out, in] tensor, got {describe(mask)}")
        self.n_out, self.n_in = (int(s) for s in mask.shape)
        check_mask(mask, (self.n_out, self.n_in))
        check_group_ids(out_groups, self.n_out, "out_groups")
        check_group_ids(in_groups, self.n_in, "in_groups")
        if (out_groups is None) != (in_groups is None):
            raise G2GError("give both out_groups and in_groups, or neither")
        mask = mask.detach().cpu()
        if out_groups is None:
            found = find_groups(mask)
            if found is not None:
                out_groups, in_groups = found.out_groups, found.in_groups
        else:
            out_groups, in_groups = out_groups.detach().cpu().long(), in_groups.detach().cpu().long()
        if blocks is None:
            blocks = blocks_pay(mask, out_groups, in_groups)
        elif blocks:
            check_block_groups(out_groups, in_groups, self.n_out, self.n_in)
        self.blocks = bool(blocks)
        self.register_buffer("out_groups", out_groups, persistent=False)
        self.register_buffer("in_groups", in_groups, persistent=False)
        self.intra = nn.Parameter(torch.empty(0, 0, 0))
        self.values = nn.Parameter(torch.empty(0))
        self.capacity = 0  # minimum length of ``values`` (``reserve_``)
        self._repack(mask)

    # -- the layout ---------------------------------------------------------------------------
    def _repack(self, mask: Tensor) -> None:
        """Record ``mask`` (CPU bool) and rebuild its layout; the parameters get the layout's
        sizes, zero-filled (their values are the caller's business)."""
        use = (self.out_groups.cpu(), self.in_groups.cpu()) if self.blocks else (None, None)
        lay = build_layout(mask, *use, blocks=self.blocks)
        device = self.values.device
        self.register_buffer("mask_bits", pack_bits(mask).to(device), persistent=False)
        for name in Layout.TENSORS:
            t = getattr(lay, name)
            self.register_buffer(name, None if t is None else t.to(device), persistent=False)
        self._ints = tuple(getattr(lay, name) for name in Layout.INTS)
        self._nnz = int(torch.count_nonzero(mask))
        self._invalidate()
        # Same shapes (DST reserves them): zero in place, so the parameters keep their storage
        # (DDP buckets, compiled graphs and optimizer references see the same tensors).
        for param, shape in ((self.intra, lay.intra_shape), (self.values, (max(lay.n_values, self.capacity),))):
            if tuple(param.shape) == tuple(shape):
                param.data.zero_()
            else:
                param.data = torch.zeros(shape, dtype=param.dtype, device=device)
        self.intra.grad = self.values.grad = None

    def _invalidate(self) -> None:
        self._layout = None  # the Layout of the buffers, built on first use
        self._op_args = None  # (tensors, ints) for the custom ops, built on first use
        self.infer_plans = {}  # per thread: the inference kernel bound to this layout (kernels.ops)
        self._flat = None  # dense positions of (intra, values), cached by the reference path
        self.version = getattr(self, "version", 0) + 1  # bumped at every repack or move

    def __getstate__(self) -> dict:  # deepcopy / pickle: the caches are rebuilt on use (and hold ctypes)
        state = dict(self.__dict__)
        state.update(_layout=None, _op_args=None, _flat=None, infer_plans={})
        return state

    def _apply(self, fn, recurse: bool = True):  # .to(), .cuda(), .double(): cached tensors go stale
        out = super()._apply(fn, recurse)
        self._invalidate()
        return out

    @property
    def layout(self) -> Layout:
        if self._layout is None:
            kw = dict(zip(Layout.INTS, self._ints))
            kw.update({name: getattr(self, name) for name in Layout.TENSORS})
            # Rebuilt at every change of the mask (_invalidate): what it keeps stays true.
            self._layout = Layout(**kw, keep_transposed=True)
        return self._layout

    def op_args(self) -> tuple[list[Tensor], list[int]]:
        """The layout as the custom ops take it (``Layout.op_args``), cached until it changes."""
        if self._op_args is None:
            with _normal_tensors():
                self._op_args = self.layout.op_args()
        return self._op_args

    @property
    def n_groups(self) -> int:
        return self._ints[Layout.INTS.index("n_groups")]

    @property
    def n_values(self) -> int:
        return self._ints[Layout.INTS.index("n_values")]

    @property
    def mask(self) -> Tensor:
        """BoolTensor [out, in] (unpacked from the bits on each access)."""
        return unpack_bits(self.mask_bits, self.n_in)

    @property
    def nnz(self) -> int:
        return self._nnz

    def extra_repr(self) -> str:
        blocks = "x".join(map(str, self.intra.shape)) if self.n_groups else "none"
        return (f"nnz={self.nnz}, blocks={blocks}, other connections={self.n_values} "
                f"(stored in {self.values.numel()})")

    # -- dense views and per-connection tensors ---------------------------------------------------
    def _positions(self) -> Tensor:
        """int64 [G*og*ig + n_values]: the dense flat position of every stored entry."""
        if self._flat is None or self._flat.device != self.values.device:
            with _normal_tensors():
                self._flat = self._build_positions()
        return self._flat

    def _build_positions(self) -> Tensor:
        lay = self.layout
        parts = [lay.flat_intra()] if lay.n_groups else []
        return torch.cat([*parts, lay.flat_values()]) if lay.n_values or parts else \
            torch.zeros(0, dtype=torch.long, device=self.values.device)

    def dense(self, intra: Tensor | None = None, values: Tensor | None = None) -> Tensor:
        """[out, in] with ``intra``/``values`` (default: the parameters) at their positions, 0 off
        the mask; differentiable. Any tensors shaped like the parameters work (gradients, Adam
        state)."""
        intra = self.intra if intra is None else intra
        values = self.values if values is None else values
        if self.block_mask is not None:  # entries of a block the mask turns off stay 0
            intra = intra * self.block_mask
        # One scatter of both parts: ``intra`` takes part even when empty, so it always gets a
        # gradient (DDP requires every parameter to).
        src = torch.cat([intra.reshape(-1), values[: self.n_values]])
        dense = src.new_zeros(self.n_out * self.n_in).index_put((self._positions(),), src)
        return dense.view(self.n_out, self.n_in)

    def from_dense(self, dense: Tensor) -> tuple[Tensor, Tensor]:
        """Tensors shaped like ``intra`` and ``values`` read from a dense [out, in] one (the tail
        of ``values`` beyond the active connections is 0)."""
        flat = dense.to(self.values.device).reshape(-1)[self._positions()]
        n_intra = self.intra.numel()
        intra = flat[:n_intra].view(self.intra.shape)
        if self.block_mask is not None:
            intra = intra * self.block_mask
        values = torch.cat([flat[n_intra:], flat.new_zeros(self.values.numel() - self.n_values)])
        return intra, values

    @torch.no_grad()
    def load_dense_(self, dense: Tensor) -> None:
        """Take the entries of a dense [out, in] tensor on the active connections."""
        intra, values = self.from_dense(dense.to(self.values.dtype))
        self.intra.copy_(intra)
        self.values.copy_(values)

    def active_values(self) -> Tensor:
        """The active weights in row-major order of the mask (layout-free; differentiable)."""
        return self.dense().reshape(-1)[self.mask.reshape(-1).to(self.values.device)]

    # -- changing the mask ----------------------------------------------------------------------
    @torch.no_grad()
    def set_mask_(self, mask: Tensor) -> None:
        """Replace the mask and repack: a weight stays where its connection stays active, newly
        active connections start at 0. Gradients are dropped (their layout is gone)."""
        check_mask(mask, (self.n_out, self.n_in))
        dense = self.dense().detach()
        mask = mask.detach()
        self._repack(mask.cpu())
        self.load_dense_(dense * mask.to(dense.device))

    @torch.no_grad()
    def reserve_(self, capacity: int) -> tuple[nn.Parameter, nn.Parameter] | None:
        """Keep ``values`` at least ``capacity`` long from now on, so that masks with up to that
        many connections outside the blocks fit without resizing (DST reserves the whole nnz:
        parameter and optimizer-state shapes then never change while it rewires). When
        ``values`` must grow, it becomes a new, longer Parameter (the old one's autograd
        bookkeeping, still referenced by a finished step's graph, would reject the new shape);
        returns ``(old, new)`` so the caller can point its optimizer at the new one."""
        self.capacity = max(self.capacity, int(capacity))
        old = self.values
        if self.capacity <= old.numel():
            return None
        data = torch.cat([old.detach(), old.new_zeros(self.capacity - old.numel())])
        self.values = nn.Parameter(data, requires_grad=old.requires_grad)
        self._invalidate()
        return old, self.values

    # -- initialisation -------------------------------------------------------------------------
    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """nn.Linear's default init, U(-1/sqrt(in), 1/sqrt(in)), on the active connections (the
        distribution of the full nn.Linear weight restricted to them), then fan-in-aware rescaling:
        each row's weights times sqrt(in / active fan-in of that row), since a row that keeps a
        quarter of its inputs would otherwise start with half the output scale. Drawn straight
        into the packed parameters (in layout order), never as a dense [out, in] tensor.
        """
        bound = 1.0 / math.sqrt(self.n_in)  # kaiming_uniform(a=sqrt(5)) of nn.Linear
        lay = self.layout
        self.intra.uniform_(-bound, bound, generator=generator)
        self.values.zero_()
        self.values[: lay.n_values].uniform_(-bound, bound, generator=generator)
        if lay.block_mask is not None:  # entries of the blocks that the mask turns off hold 0
            self.intra.mul_(lay.block_mask.to(self.intra))
        self.scale_by_fan_in_()

    @torch.no_grad()
    def scale_by_fan_in_(self) -> None:
        """Every row's weights times sqrt(in / its active fan-in): a dense layer's init kept on the
        mask (``reset_parameters``, or weights taken from a dense layer) gets the output scale
        of the dense layer it came from (SPEC §2)."""
        lay = self.layout
        # Active fan-in of every sorted row: its values (CSR: rowptr; tiles: T per tile) plus
        # its block row.
        t = max(lay.tile, 1)
        fan_in = (lay.rowptr.diff() * t).repeat_interleave(t).to(self.values.dtype)
        if lay.n_groups:  # a block row's active entries: all ig of them without a block mask
            fan_in += lay.ig if lay.block_mask is None else lay.block_mask.sum(2).reshape(-1).to(fan_in)
        scale = torch.sqrt(self.n_in / fan_in.clamp_min(1))
        if lay.n_groups:
            self.intra.mul_(scale.view(lay.n_groups, lay.og, 1))
        # values in order are rows (CSR) or tile rows (tiles) one after the other: scale them
        # a block of rows at a time.
        for r0 in range(0, lay.rowptr.numel() - 1, _INIT_ROWS):
            r1 = min(r0 + _INIT_ROWS, lay.rowptr.numel() - 1)
            k0, k1 = int(lay.rowptr[r0]) * t * t, int(lay.rowptr[r1]) * t * t
            counts = lay.rowptr[r0 + 1:r1 + 1] - lay.rowptr[r0:r1]
            if lay.tile:  # [tiles, T, T]: row q of every tile of tile row tr is sorted row tr*T + q
                tile_scale = scale[r0 * t:r1 * t].view(-1, t).repeat_interleave(counts, dim=0)  # [tiles, T]
                self.values[k0:k1].view(-1, t, t).mul_(tile_scale[:, :, None])
            else:
                self.values[k0:k1].mul_(scale[r0:r1].repeat_interleave(counts))

    # -- state dict -----------------------------------------------------------------------------
    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        values = self.active_values()
        destination[prefix + "mask_bits"] = self.mask_bits
        destination[prefix + "weight_values"] = values if keep_vars else values.detach()
        if self.out_groups is not None:
            destination[prefix + "out_groups"] = self.out_groups
            destination[prefix + "in_groups"] = self.in_groups
        destination[prefix + "blocks"] = torch.tensor(self.blocks)
        destination[prefix + "in_features"] = torch.tensor(self.n_in)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        keys = {k[len(prefix):]: k for k in state_dict if k.startswith(prefix) and "." not in k[len(prefix):]}
        unexpected_keys += [k for short, k in keys.items() if short not in _STATE_KEYS]
        missing = [prefix + k for k in ("mask_bits", "weight_values") if k not in keys]
        if missing:
            missing_keys += missing
            return
        if "in_features" in keys:
            width = int(expect(state_dict[keys["in_features"]], prefix + "in_features", torch.int64, ()))
            if width != self.n_in:
                raise G2GError(f"checkpoint {prefix} is of a layer with {width} inputs; this layer has {self.n_in}")
        bits = expect(state_dict[keys["mask_bits"]], prefix + "mask_bits", torch.uint8,
                       (self.n_out, (self.n_in + 7) // 8))
        if self.n_in % 8 and bool((bits[:, -1].cpu() >> (self.n_in % 8)).any()):
            raise G2GError(f"checkpoint {prefix}mask_bits has connections beyond this layer's {self.n_in} inputs")
        mask = unpack_bits(bits.cpu(), self.n_in)
        nnz = int(torch.count_nonzero(mask))
        values = expect(state_dict[keys["weight_values"]], prefix + "weight_values", None, (nnz,))
        if not values.is_floating_point():
            raise G2GError(f"checkpoint {prefix}weight_values must be floating point, got {values.dtype}")
        groups = [state_dict.get(keys[k]) if k in keys else None for k in ("out_groups", "in_groups")]
        for ids, n, k in zip(groups, (self.n_out, self.n_in), ("out_groups", "in_groups")):
            if ids is not None:
                expect(ids, prefix + k, None, (n,))
                check_group_ids(ids, n, f"checkpoint {prefix}{k}")
        if (groups[0] is None) != (groups[1] is None):
            raise G2GError(f"checkpoint {prefix} has only one of out_groups / in_groups")
        if "blocks" in keys:
            flag = expect(state_dict[keys["blocks"]], prefix + "blocks", torch.bool, ())
            out_groups, in_groups = (g.detach().cpu().long() if g is not None else None for g in groups)
            blocks = bool(flag)
        else:  # a checkpoint of an earlier version, which did not save the choice: make it now
            out_groups, in_groups = ((g.detach().cpu().long() for g in groups) if groups[0] is not None
                                     else (self.out_groups, self.in_groups))
            blocks = blocks_pay(mask, out_groups, in_groups)
        if blocks:
            try:
                check_block_groups(out_groups, in_groups, self.n_out, self.n_in)
            except G2GError as e:
                raise G2GError(f"checkpoint {prefix}out_groups / {prefix}in_groups cannot give the layer's "
                               f"dense blocks: {e}") from None
        with torch.no_grad():
            device = self.values.device
            self.blocks = blocks
            self.out_groups = None if out_groups is None else out_groups.to(device)
            self.in_groups = None if in_groups is None else in_groups.to(device)
            self._repack(mask)
            dense = torch.zeros(self.n_out * self.n_in, dtype=self.values.dtype)
            dense[mask.reshape(-1)] = values.detach().cpu().to(dense.dtype)
            self.load_dense_(dense.view(self.n_out, self.n_in))


_STATE_KEYS = ("mask_bits", "weight_values", "out_groups", "in_groups", "blocks", "in_features")


def expect(t, key: str, dtype: torch.dtype | None, shape: tuple) -> Tensor:
    """``t`` checked before use: a tensor of that shape (and dtype), else one G2GError naming it."""
    if not isinstance(t, Tensor) or tuple(t.shape) != tuple(shape) or (dtype is not None and t.dtype != dtype):
        want = f"{tuple(shape)} {dtype}" if dtype is not None else f"shape {tuple(shape)}"
        raise G2GError(f"checkpoint {key} is {describe(t)}; this layer needs {want}")
    return t
