"""``SparseLinear``: a linear layer that stores and trains only its active connections (SPEC §2, §7, §8).

The weights live in ``self.packed`` (``g2gnet.packed.PackedWeight``: dense ensemble blocks plus
the other active connections, in a layout saved with the layer). ``weight`` is the dense
effective weight [out, in], derived on demand (differentiable; 0 off the mask), and ``mask`` the
bool [out, in] pattern. ``y = x weightᵀ + b`` runs on the CPU kernels (custom ops) when they pay,
else as the masked reference ``F.linear(x, weight, bias)``; both give the same values and
gradients (``g2gnet.kernels.dispatch`` chooses).

Dynamic sparse training changes the mask through ``set_mask_`` (and ``packed.reserve_``); what
follows the layer in its model is ``post_activation``, which DST's Hebbian rule reads.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from . import state_compat
from .config import coerce
from .derived import derived
from .ensembles import ensemble_fill
from .errors import G2GError
from .kernels import dispatch
from .packed import PackedWeight, check_mask, describe


_WEIGHT_ADVICE = ("use layer.load_dense_(weight) (takes the active connections), or write layer.values / "
                  "layer.intra")
_MASK_ADVICE = "use layer.set_mask_(mask)"


class SparseLinear(nn.Module):
    """y = x (weight ⊙ mask)ᵀ + bias, storing only the active connections.

    Args:
        in_features, out_features: widths.
        mask: BoolTensor[out, in]; ``None`` means fully connected.
        bias: whether to learn an additive bias.
        in_groups, out_groups: optional LongTensor group ids of the inputs/outputs (G2G layers).
            They never change the function a set of weights computes; they say which diagonal
            blocks to store dense. Without them the ensembles are looked for in the mask
            (``ensembles.find_groups``), once. (The initial weights are drawn in storage order,
            so with the same generator a layer stored another way starts from other weights.)
        generator: RNG for the initialisation (reproducible models without global seeding).
    """

    # What follows this layer in its model, read by DST's Hebbian rule ("post" activity): an
    # activation module of the model (its output is recorded by a hook, never recomputed), a
    # pure function of the layer's output (e.g. torch.nn.functional.gelu), or None (the raw
    # output). ``sparsify`` and the model builders set it.
    post_activation = None
    # Execution path: None = automatic, False = always the masked reference, True = the native
    # kernels whenever they can run (see ``g2gnet.kernels.dispatch``).
    fast: bool | None = None

    def __init__(self, in_features: int, out_features: int, mask: Tensor | None = None, bias: bool = True, *,
                 in_groups: Tensor | None = None, out_groups: Tensor | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.in_features = coerce(in_features, int, "in_features")
        self.out_features = coerce(out_features, int, "out_features")
        if self.in_features < 1 or self.out_features < 1:
            raise G2GError(f"SparseLinear sizes must be positive, got {in_features}->{out_features}")
        if mask is None:
            mask = torch.ones(self.out_features, self.in_features, dtype=torch.bool)
        check_mask(mask, (self.out_features, self.in_features))
        self.packed = PackedWeight(mask, out_groups, in_groups)
        self.bias = nn.Parameter(torch.empty(self.out_features)) if bias else None
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """nn.Linear's default init on the active connections, rescaled by active fan-in
        (``PackedWeight.reset_parameters``); the bias as nn.Linear's."""
        self.packed.reset_parameters(generator)
        if self.bias is not None:
            bound = 1.0 / self.in_features ** 0.5
            nn.init.uniform_(self.bias, -bound, bound, generator=generator)

    # -- the packed storage, seen from outside ----------------------------------------------------
    @property
    def intra(self) -> nn.Parameter:
        """The ensembles' dense diagonal blocks [G, og, ig] (a Parameter)."""
        return self.packed.intra

    @property
    def values(self) -> nn.Parameter:
        """Every other active connection, in layout order (a 1-D Parameter)."""
        return self.packed.values

    @property
    def in_groups(self) -> Tensor | None:
        return self.packed.in_groups

    @property
    def out_groups(self) -> Tensor | None:
        return self.packed.out_groups

    @property
    def layout(self):
        return self.packed.layout

    @property
    def weight(self) -> Tensor:
        """The dense effective weight [out, in], 0 off the mask (derived at each access;
        gradients flow to the packed parameters). Read-only: writing into it raises
        (``g2gnet.derived``); ``load_dense_`` writes the layer."""
        return derived(self.packed.dense(), _WEIGHT_ADVICE)

    @property
    def mask(self) -> Tensor:
        """BoolTensor [out, in]: the active connections (derived at each access, read-only;
        ``set_mask_`` changes them)."""
        return derived(self.packed.mask, _MASK_ADVICE)

    @property
    def nnz(self) -> int:
        """Active connections. The parameters' storage holds more entries: the ensembles' blocks
        are stored whole (entries DST turned off are held at 0), and DST reserves room in
        ``values``; ``g2gnet.active_parameters(model)`` counts what is active."""
        return self.packed.nnz

    @property
    def density(self) -> float:
        """Fraction of active connections."""
        return self.nnz / (self.out_features * self.in_features)

    def set_mask_(self, mask: Tensor) -> None:
        """Replace the mask and repack: values stay where a connection stays active, newly active
        connections start at 0. Gradients are dropped (their layout is gone)."""
        self.packed.set_mask_(mask)

    @torch.no_grad()
    def load_dense_(self, weight: Tensor, bias: Tensor | None = None) -> None:
        """Take a dense layer's weights on the active connections (the rest are dropped)."""
        if not isinstance(weight, Tensor) or tuple(weight.shape) != (self.out_features, self.in_features):
            raise G2GError(f"weight must have shape {(self.out_features, self.in_features)}, got {describe(weight)}")
        if weight.device.type == "meta":
            raise G2GError("cannot take weights from the meta device (they have no values); materialise the "
                           "model first (e.g. model.to_empty(device='cpu') and its init)")
        if bias is not None:
            if self.bias is None:
                raise G2GError("load_dense_ got a bias for a layer built with bias=False")
            if not isinstance(bias, Tensor) or tuple(bias.shape) != (self.out_features,):
                raise G2GError(f"bias must have shape {(self.out_features,)}, got {describe(bias)}")
        self.packed.load_dense_(weight.detach() * self.packed.mask.to(weight.device))
        if bias is not None:
            self.bias.copy_(bias)

    def ensemble_fill(self) -> Tensor | None:
        """[G, G]: the fraction of links active in every (output, input) ensemble pair's block
        (which ensembles survive DST), or None without ensembles."""
        if self.out_groups is None:
            return None
        return ensemble_fill(self.packed.mask, self.out_groups, self.in_groups)

    def __setattr__(self, name: str, value) -> None:
        if name == "post_activation":  # a reference to a module of the model, not a child of this layer
            if value is not None and not callable(value):
                raise G2GError(f"post_activation must be a module, a function or None, got {value!r}")
            object.__setattr__(self, name, value)
        elif name in ("weight", "mask"):  # derived views of the packed storage, not attributes
            raise G2GError(f"SparseLinear.{name} cannot be assigned: "
                           f"{_WEIGHT_ADVICE if name == 'weight' else _MASK_ADVICE}")
        else:
            super().__setattr__(name, value)

    def _load_from_state_dict(self, state_dict, prefix, *args) -> None:
        state_compat.upgrade(self, state_dict, prefix)  # other formats -> packed.* (before packed loads)
        super()._load_from_state_dict(state_dict, prefix, *args)

    # -- compute ----------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() == 0 or x.shape[-1] != self.in_features:
            # one message on every path (the reference's was torch's "mat1 and mat2 shapes cannot
            # be multiplied", the kernels' their own)
            raise G2GError(f"SparseLinear({self.in_features} -> {self.out_features}) takes inputs "
                           f"[..., {self.in_features}], got {describe(x)}")
        path = dispatch.choose(self, x)
        if path is not None:
            return dispatch.PATHS[path](self, x)
        # The masked product: weight is 0 off the mask, and the gradients reach only the packed
        # (active) parameters.
        return F.linear(x, self.packed.dense(), self.bias)

    def execution_path(self, x: Tensor) -> str:
        """Which implementation ``self(x)`` runs: a native path's name or "reference"."""
        return dispatch.choose(self, x) or "reference"

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, density={self.density:.4f}, active={self.nnz:,}")


def sparse_layers(model: nn.Module) -> list[tuple[str, SparseLinear]]:
    """All SparseLinear layers of ``model`` with their qualified names, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SparseLinear)]


def derived_buffers(model: nn.Module) -> list[str]:
    """Qualified names of the SparseLinear buffers that every process derives identically from
    the seed and DST's checked masks (data-parallel wrappers need not broadcast them; gloo
    cannot broadcast some of their dtypes)."""
    return [f"{name}.packed.{b}" for name, layer in sparse_layers(model) for b, _ in layer.packed.named_buffers()]
