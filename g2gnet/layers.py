"""``SparseLinear``: a linear layer whose connections are a fixed-shape boolean mask (SPEC §2, §8).

``weight`` is the effective weight: entries where ``mask`` is False are held at exactly 0, so
``weight`` can be read, saved and analysed without knowing the mask. The layer knows nothing of
dynamic sparse training; ``g2gnet.dst`` changes the mask through ``set_mask_``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import G2GError
from .kernels.dispatch import choose, invalidate
from .kernels.function import _native_lib, g2g_linear


class SparseLinear(nn.Module):
    """y = x (weight ⊙ mask)ᵀ + bias, with ``weight`` zero wherever ``mask`` is False.

    Args:
        in_features, out_features: widths.
        mask: BoolTensor[out, in]; ``None`` means fully connected.
        bias: whether to learn an additive bias.
        in_groups, out_groups: optional LongTensor group ids of the inputs/outputs (G2G layers).
            They never change the result; the fast execution path uses them to find the
            block-diagonal part of the mask (without them it plans with contiguous blocks).
        generator: RNG for the initialisation (reproducible models without global seeding).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        mask: torch.Tensor | None = None,
        bias: bool = True,
        *,
        in_groups: torch.Tensor | None = None,
        out_groups: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise G2GError(f"SparseLinear sizes must be positive, got {in_features}->{out_features}")
        self.in_features = in_features
        self.out_features = out_features
        if mask is None:
            mask = torch.ones(out_features, in_features, dtype=torch.bool)
        self._check_mask(mask)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.register_buffer("mask", mask.detach().clone().to(torch.bool))
        for name, g, n in (("in_groups", in_groups, in_features), ("out_groups", out_groups, out_features)):
            if g is not None and g.shape != (n,):
                raise G2GError(f"{name} must have shape ({n},), got {tuple(g.shape)}")
            self.register_buffer(name, None if g is None else g.detach().clone().long())
        self.reset_parameters(generator)

    # -- construction -----------------------------------------------------------------------
    def _check_mask(self, mask: torch.Tensor) -> None:
        shape = (self.out_features, self.in_features)
        if tuple(mask.shape) != shape:
            raise G2GError(f"mask must have shape {shape} (out, in), got {tuple(mask.shape)}")
        if mask.dtype != torch.bool:
            raise G2GError(f"mask must be a bool tensor, got {mask.dtype}")

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """nn.Linear's default init on the full weight, then fan-in-aware rescaling.

        Each row's active weights are multiplied by sqrt(in / active fan-in of that row): a row
        that keeps a quarter of its inputs would otherwise start with half the output scale.
        """
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=generator)
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound, generator=generator)
        fan_in = self.mask.sum(dim=1, keepdim=True).clamp_min(1).to(self.weight.dtype)
        self.weight.mul_(torch.sqrt(self.in_features / fan_in)).mul_(self.mask)

    # -- mask handling ----------------------------------------------------------------------
    @property
    def density(self) -> float:
        """Fraction of active connections."""
        return self.mask.float().mean().item()

    @property
    def nnz(self) -> int:
        return int(self.mask.sum())

    @torch.no_grad()
    def set_mask_(self, mask: torch.Tensor) -> None:
        """Replace the mask in place; newly inactive weights become exactly 0."""
        self._check_mask(mask)
        self.mask.copy_(mask.to(self.mask.device))
        self.weight.mul_(self.mask)
        self._mask_changed()

    @torch.no_grad()
    def load_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """Take a dense layer's weights on the active connections (the rest become 0)."""
        if tuple(weight.shape) != tuple(self.mask.shape):
            raise G2GError(f"weight must have shape {tuple(self.mask.shape)}, got {tuple(weight.shape)}")
        self.weight.copy_(weight * self.mask)
        if bias is not None and self.bias is not None:
            self.bias.copy_(bias)
        self._mask_changed()

    def _mask_changed(self) -> None:
        """Drop the cached execution plan of the fast path; the next forward rebuilds it."""
        invalidate(self)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: D401
        mask = state_dict.get(prefix + "mask")
        if mask is not None and (tuple(mask.shape) != tuple(self.mask.shape) or mask.dtype != torch.bool):
            raise G2GError(
                f"checkpoint mask {prefix}mask has shape {tuple(mask.shape)} and dtype {mask.dtype}; "
                f"this layer needs {tuple(self.mask.shape)} bool"
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._mask_changed()

    # -- compute ----------------------------------------------------------------------------
    # The non-linearity that follows this layer in its model (e.g. torch.relu), or None. Only
    # DST's Hebbian rule reads it: its "post" activity is post_activation(output).
    post_activation = None
    # Fast path switch: None = automatic (G2G layers sparse enough), False = always the masked
    # reference, True = fast whenever the groups allow it. See ``g2gnet.kernels.dispatch``.
    fast: bool | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = choose(self, x)
        if plan is not None:
            # Block-diagonal bmm + sparse inter-group kernels; same values and gradients as below
            # (output may be a transposed view: use .reshape, not .view, on it).
            return g2g_linear(x, self.weight, self.bias, plan)
        # The masked product keeps gradients of inactive entries at exactly zero, so optimizers
        # never move them; ``g2gnet.dst`` computes dense gradients separately when it needs them.
        return F.linear(x, self.weight * self.mask, self.bias)

    def execution_path(self, x: torch.Tensor) -> str:
        """Which implementation ``self(x)`` runs: "reference", "native" (C++ kernels) or "torch"."""
        plan = choose(self, x)
        if plan is None:
            return "reference"
        return "native" if _native_lib(x, self.weight) is not None else "torch"

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, density={self.density:.4f}"
        )


def sparse_layers(model: nn.Module) -> list[tuple[str, SparseLinear]]:
    """All SparseLinear layers of ``model`` with their qualified names, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SparseLinear)]


def masks_from_state(state: dict) -> dict[str, torch.Tensor]:
    """The masks of the SparseLinear layers in a model ``state_dict``, by layer name, with rows and
    columns sorted by ensemble where group ids are stored (so the blocks are visible)."""
    out = {}
    for key, mask in state.items():
        if not key.endswith(".mask") or not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            continue
        prefix = key[: -len("mask")]
        og, ig = state.get(prefix + "out_groups"), state.get(prefix + "in_groups")
        if isinstance(og, torch.Tensor) and isinstance(ig, torch.Tensor):
            mask = mask[torch.argsort(og, stable=True)][:, torch.argsort(ig, stable=True)]
        out[prefix[:-1]] = mask
    return out
