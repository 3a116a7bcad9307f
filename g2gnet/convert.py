"""G2G connectivity in any model (SPEC §8): ``sparsify`` swaps chosen ``nn.Linear`` modules for G2G
``SparseLinear`` layers that keep the existing weights on their active connections.

What it leaves alone, and why:
- a final classifier (the last ``nn.Linear`` of the model, unless ``include`` names it): its
  outputs are classes, not ensembles;
- layers whose widths ``groups`` does not divide (the summary says so);
- linear modules whose weight the parent reads directly instead of calling them, such as
  ``nn.MultiheadAttention.out_proj``: the parent would bypass the mask.

Hebbian "post" activity: DST's Hebbian rule scores a connection by the activity of its input
unit and of its output unit after the non-linearity that follows the layer. ``sparsify`` finds it
where the model says it: the next module of an ``nn.Sequential`` when it is an activation, or
``activation`` of a ``nn.TransformerEncoderLayer``/``DecoderLayer`` for ``linear1``. Elsewhere the
layer's raw output is used (set ``layer.post_activation`` to a callable to change that).
"""

from __future__ import annotations

import fnmatch

import torch
import torch.nn as nn

from .config import coerce
from .errors import G2GError, lookup
from .layers import SparseLinear
from .topology import GROUPINGS, group_ids, modular_mask

# Modules that use a child linear's weight themselves (not through its forward).
_DIRECT_WEIGHT_PARENTS = (nn.MultiheadAttention,)
ACTIVATIONS = (nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.Mish, nn.Softplus)


def _matches(name: str, patterns: list[str] | None) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns or [])


def _following_activation(model: nn.Module, name: str):
    """The non-linearity applied to the output of the linear at ``name``, if the model shows it."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(parent, nn.Sequential):
        names = list(parent._modules)
        i = names.index(child)
        nxt = parent._modules[names[i + 1]] if i + 1 < len(names) else None
        return nxt if isinstance(nxt, ACTIVATIONS) else None
    if isinstance(parent, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)) and child == "linear1":
        return parent.activation
    return None


def candidates(model: nn.Module, groups: int, include: list[str] | None = None,
               exclude: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """(names to replace, {name: why it is kept}) for ``sparsify``'s selection rules."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    parents = {id(c): p for p in model.modules() for c in p.children()}
    last = linears[-1][0] if linears else None
    chosen, kept = [], {}
    for name, m in linears:
        if include is not None and not _matches(name, include):
            kept[name] = "not in include"
        elif _matches(name, exclude):
            kept[name] = "excluded"
        elif isinstance(parents.get(id(m)), _DIRECT_WEIGHT_PARENTS):
            kept[name] = f"its parent {type(parents[id(m)]).__name__} reads the weight directly"
        elif name == last and include is None:
            kept[name] = "final classifier"
        elif m.in_features % groups or m.out_features % groups:
            kept[name] = f"groups={groups} does not divide {m.in_features}->{m.out_features}"
        else:
            chosen.append(name)
    return chosen, kept


@torch.no_grad()
def sparsify(
    model: nn.Module,
    *,
    groups: int = 8,
    p_intra: float = 1.0,
    p_inter: float = 0.15,
    grouping: str = "random",
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    seed: int = 0,
) -> nn.Module:
    """Replace the selected ``nn.Linear`` modules of ``model`` by G2G ``SparseLinear`` layers, in
    place, and return the model.

    Selection: every ``nn.Linear`` whose widths ``groups`` divides, except a final classifier and
    modules whose parent reads their weight directly; ``include`` / ``exclude`` are glob patterns
    on qualified module names (``include`` also admits a final classifier). Each replaced layer
    gets group ids by ``grouping`` (``random``, ``index`` or ``mixer``, counted over the replaced
    layers in module order), a modular mask, and the old weights on its active connections (no
    rescaling). ``g2gnet.sparsify.summary(model)`` lists what the model now holds.
    """
    groups = coerce(groups, int, "groups")
    seed = coerce(seed, int, "seed")
    if groups < 1:
        raise G2GError(f"groups must be >= 1, got {groups}")
    schemes = lookup(GROUPINGS, grouping, "grouping")
    for what, patterns in (("include", include), ("exclude", exclude)):
        if patterns is not None and (isinstance(patterns, str) or not all(isinstance(p, str) for p in patterns)):
            raise G2GError(f"{what} must be a list of name patterns, got {patterns!r}")
    chosen, _ = candidates(model, groups, include, exclude)
    if include is not None and not chosen:
        raise G2GError(f"include {include} selects no nn.Linear whose widths groups={groups} divides")
    gen = torch.Generator().manual_seed(seed)
    for index, name in enumerate(chosen):
        old = model.get_submodule(name)
        out_scheme, in_scheme = schemes(index)
        og = group_ids(old.out_features, groups, out_scheme, gen)
        ig = group_ids(old.in_features, groups, in_scheme, gen)
        mask = modular_mask(og, ig, p_intra, p_inter, gen)
        new = SparseLinear(old.in_features, old.out_features, mask, bias=old.bias is not None,
                           in_groups=ig, out_groups=og)
        new.load_dense_(old.weight, old.bias)
        new.to(device=old.weight.device, dtype=old.weight.dtype)
        act = _following_activation(model, name)
        if act is not None:  # a plain attribute: the activation module stays where the model has it
            object.__setattr__(new, "post_activation", act)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
    return model


def summary(model: nn.Module) -> str:
    """One line per linear layer: sparse (shape, density, ensembles) or dense, with totals."""
    lines, active, dense_total = [], 0, 0
    for name, m in model.named_modules():
        if isinstance(m, SparseLinear):
            g = "" if m.in_groups is None else f", {int(m.in_groups.max()) + 1} ensembles"
            lines.append(f"{name}: SparseLinear {m.in_features}->{m.out_features}, density {m.density:.3f}{g}")
            active += m.nnz
            dense_total += m.in_features * m.out_features
        elif isinstance(m, nn.Linear):
            lines.append(f"{name}: dense nn.Linear {m.in_features}->{m.out_features}")
    if dense_total:
        lines.append(f"sparse layers: {active:,} of {dense_total:,} weights active ({active / dense_total:.3f})")
    return "\n".join(lines)
