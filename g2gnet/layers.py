"""``SparseLinear``: a linear layer that stores and trains only its active connections (SPEC §2, §7, §8).

Parameters, gradients and optimizer state are O(nnz): ``intra`` holds the dense diagonal blocks of
the ensembles (in group-sorted order) and ``values`` every other active connection, as the layer's
``Layout`` (``g2gnet.kernels.layout``) says. ``weight`` is the dense effective weight [out, in],
derived on demand (differentiable; 0 off the mask), and ``mask`` the bool [out, in] pattern, kept
as bits. ``y = x weightᵀ + b`` runs on the CPU kernels (custom ops) when it pays, else as the
masked reference ``F.linear(x, weight, bias)``; both give the same values and gradients.

The layer knows nothing of dynamic sparse training: ``g2gnet.dst`` changes the mask through
``set_mask_``, which repacks the values (``to_dense`` / ``from_dense`` move any per-connection
tensor, e.g. optimizer state, between the old and the new layout).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .config import coerce
from .errors import G2GError
from .kernels import dispatch
from .kernels.layout import Layout, blocks_pay, build_layout, pack_bits, unpack_bits
from .topology import find_groups

_EMPTY = {"out_perm": torch.int64, "in_perm": torch.int64, "block_mask": torch.bool}
_INIT_ROWS = 512  # rows scaled at once by the init (bounds its temporary memory)


class SparseLinear(nn.Module):
    """y = x (weight ⊙ mask)ᵀ + bias, storing only the active connections.

    Args:
        in_features, out_features: widths.
        mask: BoolTensor[out, in]; ``None`` means fully connected.
        bias: whether to learn an additive bias.
        in_groups, out_groups: optional LongTensor group ids of the inputs/outputs (G2G layers).
            They never change the result; they say which diagonal blocks to store dense. Without
            them the ensembles are found from the mask (``topology.find_groups``).
        generator: RNG for the initialisation (reproducible models without global seeding).
    """

    # The non-linearity that follows this layer in its model (e.g. torch.relu), or None. Only
    # DST's Hebbian rule reads it: its "post" activity is post_activation(output).
    post_activation = None
    # Execution path: None = automatic, False = always the masked reference, True = the native
    # kernels whenever they can run (see ``g2gnet.kernels.dispatch``).
    fast: bool | None = None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        mask: Tensor | None = None,
        bias: bool = True,
        *,
        in_groups: Tensor | None = None,
        out_groups: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_features = coerce(in_features, int, "in_features")
        self.out_features = coerce(out_features, int, "out_features")
        if self.in_features < 1 or self.out_features < 1:
            raise G2GError(f"SparseLinear sizes must be positive, got {in_features}->{out_features}")
        if mask is None:
            mask = torch.ones(self.out_features, self.in_features, dtype=torch.bool)
        self._check_mask(mask)
        for name, g, n in (("in_groups", in_groups, self.in_features), ("out_groups", out_groups, self.out_features)):
            if g is not None and (not isinstance(g, Tensor) or g.shape != (n,) or g.is_floating_point()):
                raise G2GError(f"{name} must be an integer tensor of shape ({n},), got {_describe(g)}")
            self.register_buffer(name, None if g is None else g.detach().clone().long())
        self.intra = nn.Parameter(torch.empty(0, 0, 0))
        self.values = nn.Parameter(torch.empty(0))
        self._capacity = 0  # minimum length of ``values`` (see ``reserve_``)
        self.bias = nn.Parameter(torch.empty(self.out_features)) if bias else None
        self._choose_blocks(mask.detach().cpu())
        self._set_layout(mask.detach().cpu())
        self.reset_parameters(generator)

    # -- construction -----------------------------------------------------------------------
    def _check_mask(self, mask) -> None:
        if not isinstance(mask, Tensor):
            raise G2GError(f"mask must be a bool tensor, got {type(mask).__name__}")
        shape = (self.out_features, self.in_features)
        if tuple(mask.shape) != shape:
            raise G2GError(f"mask must have shape {shape} (out, in), got {tuple(mask.shape)}")
        if mask.dtype != torch.bool:
            raise G2GError(f"mask must be a bool tensor, got {mask.dtype}")

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """nn.Linear's default init, U(-1/sqrt(in), 1/sqrt(in)), on the active connections (the
        distribution of the full nn.Linear weight restricted to them), then fan-in-aware rescaling:
        each row's weights times sqrt(in / active fan-in of that row), since a row that keeps a
        quarter of its inputs would otherwise start with half the output scale. Drawn straight
        into the packed parameters (in layout order), never as a dense [out, in] tensor.
        """
        bound = 1.0 / math.sqrt(self.in_features)  # kaiming_uniform(a=sqrt(5)) of nn.Linear
        lay = self.layout
        self.intra.uniform_(-bound, bound, generator=generator)
        self.values.zero_()
        self.values[: lay.n_values].uniform_(-bound, bound, generator=generator)
        # Active fan-in of every sorted row: its values (CSR: rowptr; tiles: T per tile) plus
        # its block row.
        t = max(lay.tile, 1)
        per_row = (lay.rowptr.diff() * t).repeat_interleave(t).to(self.values.dtype)
        fan_in = per_row.clone()
        if lay.n_groups:
            block = self.intra.new_ones(lay.intra_shape) if lay.block_mask is None else lay.block_mask.to(self.intra)
            self.intra.mul_(block)
            fan_in += block.sum(2).reshape(-1)
        scale = torch.sqrt(self.in_features / fan_in.clamp_min(1))
        if lay.n_groups:
            self.intra.mul_(scale.view(lay.n_groups, lay.og, 1))
        # values in order are rows (CSR) or tile rows (tiles) one after the other: scale them
        # a block of rows at a time.
        for r0 in range(0, lay.rowptr.numel() - 1, _INIT_ROWS):
            r1 = min(r0 + _INIT_ROWS, lay.rowptr.numel() - 1)
            k0, k1 = int(lay.rowptr[r0]) * t * t, int(lay.rowptr[r1]) * t * t
            if lay.tile:  # [tiles, T, T]: row q of every tile of tile row tr is sorted row tr*T + q
                counts = lay.rowptr[r0 + 1:r1 + 1] - lay.rowptr[r0:r1]
                s = scale[r0 * t:r1 * t].view(-1, t)
                tile_scale = s.repeat_interleave(counts, dim=0)  # [tiles, T]
                self.values[k0:k1].view(-1, t, t).mul_(tile_scale[:, :, None])
            else:
                self.values[k0:k1].mul_(scale[r0:r1].repeat_interleave(lay.rowptr[r0 + 1:r1 + 1] - lay.rowptr[r0:r1]))
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound, generator=generator)

    # -- the layout of the active connections -------------------------------------------------
    def _choose_blocks(self, mask: Tensor) -> None:
        """Which ensembles the layout uses (the given ones, else those found in ``mask``) and
        whether their blocks are stored dense. Decided once: later masks (DST) keep the choice,
        so the parameters keep their shapes."""
        if self.out_groups is not None and self.in_groups is not None:
            groups = (self.out_groups.cpu(), self.in_groups.cpu())
        else:
            found = find_groups(mask)
            groups = (found.out_groups, found.in_groups) if found is not None else (None, None)
        self._blocks = blocks_pay(mask, *groups)
        self._layout_groups = groups if self._blocks else (None, None)

    def _set_layout(self, mask: Tensor) -> None:
        """Record ``mask`` and build its layout; the parameters get the layout's sizes (zeros)."""
        lay = build_layout(mask, *self._layout_groups, blocks=self._blocks)
        device = self.values.device
        self.register_buffer("mask_bits", pack_bits(mask).to(device))
        for name in Layout.TENSORS:
            t = getattr(lay, name)
            if t is None:
                t = torch.empty(0, dtype=_EMPTY[name])
            self.register_buffer(f"_layout_{name}", t.to(device), persistent=False)
        self._meta = [getattr(lay, name) for name in Layout.INTS]
        self._nnz = int(torch.count_nonzero(mask))
        self._flat = None  # dense positions, cached by the reference path
        # Same shapes (DST reserves them): zero in place, so the parameters keep their storage
        # (DDP buckets, compiled graphs and optimizer references see the same tensors).
        for param, shape in ((self.intra, lay.intra_shape), (self.values, (max(lay.n_values, self._capacity),))):
            if tuple(param.shape) == tuple(shape):
                param.data.zero_()
            else:
                param.data = torch.zeros(shape, dtype=param.dtype, device=device)
        self.intra.grad = self.values.grad = None

    @torch.no_grad()
    def reserve_(self, capacity: int) -> None:
        """Keep ``values`` at least ``capacity`` long from now on, so that masks with up to that many
        connections outside the blocks fit without resizing the parameters. DST reserves the
        layer's whole nnz: parameter and optimizer-state shapes then never change while it
        rewires (autograd, DDP buckets and compiled graphs rely on them); the unused tail is 0
        and gets 0 gradients."""
        self._capacity = int(capacity)
        if self._capacity > self.values.numel():
            self.values.data = torch.cat([self.values.data, self.values.new_zeros(self._capacity - self.values.numel())])
            self.values.grad = None

    @property
    def layout(self) -> Layout:
        kw = dict(zip(Layout.INTS, self._meta))
        for name in Layout.TENSORS:
            t = getattr(self, f"_layout_{name}")
            kw[name] = None if (name in _EMPTY and t.numel() == 0) else t
        return Layout(**kw)

    def layout_tensors(self) -> list[Tensor]:
        return [getattr(self, f"_layout_{name}") for name in Layout.TENSORS]

    def to_dense(self, intra: Tensor, values: Tensor) -> Tensor:
        """[out, in] from tensors shaped like ``intra`` and ``values`` (e.g. gradients, Adam state)."""
        lay = self.layout
        return lay.to_dense(intra, values[: lay.n_values])

    def from_dense(self, dense: Tensor) -> tuple[Tensor, Tensor]:
        """Tensors shaped like ``intra`` and ``values``, read from a dense [out, in] one."""
        intra, values = self.layout.from_dense(dense.to(self.values.device))
        return intra, torch.cat([values, values.new_zeros(self.values.numel() - values.numel())])

    @torch.no_grad()
    def _load_dense(self, dense: Tensor) -> None:
        intra, values = self.from_dense(dense.to(self.values.dtype))
        self.intra.copy_(intra)
        self.values.copy_(values)

    # -- the public views -------------------------------------------------------------------
    @property
    def mask(self) -> Tensor:
        """BoolTensor [out, in]: the active connections (unpacked from bits on each access)."""
        return unpack_bits(self.mask_bits, self.in_features)

    @property
    def weight(self) -> Tensor:
        """The dense effective weight [out, in], 0 off the mask (derived; gradients flow to the
        packed parameters)."""
        return self._dense(self.intra, self.values)

    def _dense(self, intra: Tensor, values: Tensor) -> Tensor:
        if self._flat is None or self._flat[1].device != values.device:
            lay = self.layout
            self._flat = (lay.flat_intra() if lay.n_groups else None, lay.flat_values())
        fi, fv = self._flat
        values = values[: fv.numel()]
        dense = values.new_zeros(self.out_features * self.in_features)
        if fi is not None:
            if self._layout_block_mask.numel():  # entries of a block the mask turns off stay 0
                intra = intra * self._layout_block_mask
            dense = dense.index_put((fi,), intra.reshape(-1))
        dense = dense.index_put((fv,), values)
        return dense.view(self.out_features, self.in_features)

    def dense_grad(self) -> Tensor | None:
        """The gradient of the loss w.r.t. ``weight`` on the active connections, [out, in]."""
        if self.values.grad is None and self.intra.grad is None:
            return None
        gi = self.intra.grad if self.intra.grad is not None else torch.zeros_like(self.intra)
        gv = self.values.grad if self.values.grad is not None else torch.zeros_like(self.values)
        return self.to_dense(gi, gv)

    @property
    def nnz(self) -> int:
        return self._nnz

    @property
    def density(self) -> float:
        """Fraction of active connections."""
        return self._nnz / (self.out_features * self.in_features)

    # -- changing the mask --------------------------------------------------------------------
    @torch.no_grad()
    def set_mask_(self, mask: Tensor) -> None:
        """Replace the mask and repack: values stay where a connection stays active, newly active
        connections start at 0. Gradients are dropped (their layout is gone)."""
        self._check_mask(mask)
        dense = self.weight.detach()
        mask = mask.detach().to(dense.device)
        self._set_layout(mask.cpu())
        self._load_dense(dense * mask)

    @torch.no_grad()
    def load_dense_(self, weight: Tensor, bias: Tensor | None = None) -> None:
        """Take a dense layer's weights on the active connections (the rest are dropped)."""
        if not isinstance(weight, Tensor) or tuple(weight.shape) != (self.out_features, self.in_features):
            raise G2GError(f"weight must have shape {(self.out_features, self.in_features)}, got {_describe(weight)}")
        self._load_dense(weight.detach() * self.mask.to(weight.device))
        if bias is not None and self.bias is not None:
            self.bias.copy_(bias)

    # -- state dict: mask bits + the active values in row-major order (layout-free) ------------
    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        weight = self.weight if keep_vars else self.weight.detach()
        destination[prefix + "mask_bits"] = self.mask_bits
        destination[prefix + "weight_values"] = weight.reshape(-1)[self.mask.reshape(-1).to(weight.device)]
        for name in ("in_groups", "out_groups"):
            if getattr(self, name) is not None:
                destination[prefix + name] = getattr(self, name)
        if self.bias is not None:
            destination[prefix + "bias"] = self.bias if keep_vars else self.bias.detach()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        keys = {k[len(prefix):]: k for k in state_dict if k.startswith(prefix) and "." not in k[len(prefix):]}
        if "weight" in keys and "mask" in keys:  # g2gnet 0.1 layout: dense weight + bool mask
            mask = state_dict[keys["mask"]]
            self._check_loaded_mask(mask, prefix + "mask")
            dense = state_dict[keys["weight"]]
            values = dense.reshape(-1)[mask.reshape(-1)]
        elif "mask_bits" in keys and "weight_values" in keys:
            bits = state_dict[keys["mask_bits"]]
            expect = (self.out_features, (self.in_features + 7) // 8)
            if tuple(bits.shape) != expect or bits.dtype != torch.uint8:
                raise G2GError(f"checkpoint {prefix}mask_bits has shape {tuple(bits.shape)} and dtype {bits.dtype}; "
                               f"this layer needs {expect} uint8")
            mask = unpack_bits(bits.cpu(), self.in_features)
            values = state_dict[keys["weight_values"]]
        else:
            missing_keys += [prefix + k for k in ("mask_bits", "weight_values") if k not in keys]
            return
        if values.shape != (int(torch.count_nonzero(mask)),):
            raise G2GError(f"checkpoint {prefix}weight_values has {values.numel()} values for {int(torch.count_nonzero(mask))} "
                           "active connections")
        with torch.no_grad():
            for name in ("in_groups", "out_groups"):
                if name in keys:
                    g = state_dict[keys[name]]
                    n = self.in_features if name == "in_groups" else self.out_features
                    if tuple(g.shape) != (n,):
                        raise G2GError(f"checkpoint {prefix}{name} has shape {tuple(g.shape)}; this layer needs ({n},)")
                    self.register_buffer(name, g.detach().clone().long().to(self.values.device))
            if "in_groups" in keys or "out_groups" in keys:
                self._choose_blocks(mask.cpu())
            self._set_layout(mask.cpu())
            dense = torch.zeros(self.out_features * self.in_features, dtype=self.values.dtype)
            dense[mask.reshape(-1)] = values.detach().cpu().to(dense.dtype)
            self._load_dense(dense.view(self.out_features, self.in_features))
            if self.bias is not None and "bias" in keys:
                self.bias.copy_(state_dict[keys["bias"]])
            elif self.bias is not None:
                missing_keys.append(prefix + "bias")
        known = {"mask_bits", "weight_values", "weight", "mask", "bias", "in_groups", "out_groups"}
        unexpected_keys += [k for short, k in keys.items() if short not in known]

    def _check_loaded_mask(self, mask: Tensor, key: str) -> None:
        if tuple(mask.shape) != (self.out_features, self.in_features) or mask.dtype != torch.bool:
            raise G2GError(f"checkpoint {key} has shape {tuple(mask.shape)} and dtype {mask.dtype}; this layer "
                           f"needs {(self.out_features, self.in_features)} bool")

    # -- compute ----------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        if dispatch.use_native(self, x):
            return dispatch.native_linear(self, x)
        # The masked product: weight is 0 off the mask, and the gradients reach only the packed
        # (active) parameters.
        return F.linear(x, self.weight, self.bias)

    def execution_path(self, x: Tensor) -> str:
        """Which implementation ``self(x)`` runs: "native" (C++ kernels) or "reference"."""
        return "native" if dispatch.use_native(self, x) else "reference"

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, density={self.density:.4f}")


def _describe(x) -> str:
    return f"{tuple(x.shape)} {x.dtype}" if isinstance(x, Tensor) else repr(x)


def sparse_layers(model: nn.Module) -> list[tuple[str, SparseLinear]]:
    """All SparseLinear layers of ``model`` with their qualified names, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SparseLinear)]


def masks_from_state(state: dict) -> dict[str, Tensor]:
    """The masks of the SparseLinear layers in a model ``state_dict`` (this version's mask bits or
    the first version's bool masks), by layer name, rows and columns sorted by ensemble where
    group ids are stored (so the blocks are visible). Without group ids a bit mask is shown with
    its input width rounded up to a multiple of 8 (the padding bits are 0)."""
    out = {}
    for key, value in state.items():
        if key.endswith(".mask_bits") and isinstance(value, Tensor) and value.dtype == torch.uint8:
            prefix = key[: -len("mask_bits")]
            ig = state.get(prefix + "in_groups")
            mask = unpack_bits(value, ig.numel() if isinstance(ig, Tensor) else value.shape[1] * 8)
        elif key.endswith(".mask") and isinstance(value, Tensor) and value.dtype == torch.bool:
            prefix, mask = key[: -len("mask")], value
        else:
            continue
        og, ig = state.get(prefix + "out_groups"), state.get(prefix + "in_groups")
        if isinstance(og, Tensor) and isinstance(ig, Tensor):
            mask = mask[torch.argsort(og, stable=True)][:, torch.argsort(ig, stable=True)]
        out[prefix[:-1]] = mask
    return out
