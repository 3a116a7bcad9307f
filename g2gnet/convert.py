"""G2G connectivity in any model (SPEC §8), and back: ``sparsify`` swaps chosen ``nn.Linear``
modules for G2G ``SparseLinear`` layers that keep the existing weights on their active
connections; ``densify`` turns them back into ``nn.Linear``; ``plan`` says, before or after,
which linear layers are (or would be) replaced and why the others are not.

What ``sparsify`` leaves alone, and why (each is a reason in the plan):
- a final classifier (the last ``nn.Linear`` of the model, unless ``include`` names it): its
  outputs are classes, not ensembles;
- layers whose widths ``groups`` does not divide;
- linear modules whose weight the parent reads directly instead of calling them, such as
  ``nn.MultiheadAttention.out_proj``: the parent would bypass the mask;
- a linear whose weight Parameter is shared with another module (tied weights, e.g. a decoder
  tied to an embedding): the other module would keep reading the dense weight;
- anything but a plain ``nn.Linear``: a subclass (its own ``forward`` or state), a parametrized
  linear (``torch.nn.utils.parametrize``, e.g. ``orthogonal``) and a linear with forward or
  backward hooks: a ``SparseLinear`` would silently drop that behaviour.

A lazy linear (``nn.LazyLinear``) not yet materialised is an error: its widths are unknown until
a first forward pass. Bad input (not a module, a layer on the meta device) is a ``G2GError``
raised before anything is replaced.

A module used at several places (the same ``nn.Linear`` object twice) is replaced by one
``SparseLinear`` at all of them, so it stays shared; a frozen weight or bias
(``requires_grad=False``) stays frozen, both ways (``densify`` too).

Hebbian "post" activity: DST's Hebbian rule scores a connection by the activity of its input
unit and of its output unit after the non-linearity that follows the layer (``post_activation``).
``sparsify`` finds it where the model shows it: the next module of an ``nn.Sequential`` when it is
an activation, or ``activation`` of an ``nn.TransformerEncoderLayer``/``DecoderLayer`` for
``linear1``; ``post_activation=`` gives it where the model applies it in ``forward()`` (a function
such as ``F.gelu``, for all replaced layers or per name pattern). Where none is known, DST warns
that the rule falls back to the raw output.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.utils import parametrize

from .config import ModelConfig, coerce
from .errors import G2GError, lookup
from .layers import SparseLinear
from .topology import GROUPINGS, check_groups_count, group_ids, modular_mask

_MODEL = ModelConfig()  # sparsify's defaults are the models' (config.ModelConfig): written once, there

# Modules that use a child linear's weight themselves (not through its forward).
_DIRECT_WEIGHT_PARENTS = (nn.MultiheadAttention,)
ACTIVATIONS = (nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.Mish, nn.Softplus)


@dataclass(frozen=True)
class Decision:
    """What ``sparsify`` does (or did) with one linear layer."""

    name: str  # its first qualified name
    replace: bool
    reason: str  # why it is kept, or what it becomes
    also: tuple[str, ...] = ()  # other names of the same module (a shared layer)


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


def _check_module(model, what: str) -> None:
    if not isinstance(model, nn.Module):
        raise G2GError(f"{what} needs a torch.nn.Module, got {type(model).__name__}")


_LAZY = "a lazy layer not materialised yet"


def _is_lazy(m: nn.Module) -> bool:
    return isinstance(m, LazyModuleMixin) and m.has_uninitialized_params()


def _hooks(m: nn.Module) -> list[str]:
    """The kinds of hooks registered on ``m`` itself, which a replacement would not carry."""
    kinds = (("_forward_pre_hooks", "forward pre-hooks"), ("_forward_hooks", "forward hooks"),
             ("_backward_pre_hooks", "backward pre-hooks"), ("_backward_hooks", "backward hooks"))
    return [label for attr, label in kinds if getattr(m, attr, None)]


def _check_patterns(include, exclude) -> None:
    for what, patterns in (("include", include), ("exclude", exclude)):
        if patterns is not None and (isinstance(patterns, str) or not all(isinstance(p, str) for p in patterns)):
            raise G2GError(f"{what} must be a list of name patterns, got {patterns!r}")


def plan(model: nn.Module, groups: int = 8, include: list[str] | None = None,
         exclude: list[str] | None = None) -> list[Decision]:
    """For every ``nn.Linear`` of ``model`` (each module once, in module order): whether
    ``sparsify`` with these arguments replaces it, and why not where it does not."""
    _check_module(model, "plan")
    groups = coerce(groups, int, "groups")
    check_groups_count(groups)
    _check_patterns(include, exclude)
    names: dict[int, list[str]] = {}
    for name, m in model.named_modules(remove_duplicate=False):
        if isinstance(m, nn.Linear):
            names.setdefault(id(m), []).append(name)
    modules = {id(m): m for m in model.modules()}
    parents = {id(c): p for p in model.modules() for c in p.children()}
    owners: dict[int, set[int]] = {}  # parameter -> the modules holding it directly
    for m in model.modules():
        for p in m.parameters(recurse=False):
            owners.setdefault(id(p), set()).add(id(m))
    last = list(names)[-1] if names else None
    decisions = []
    for key, all_names in names.items():
        m, name = modules[key], all_names[0]
        tied = [n for n, other in model.named_modules() if other is not m and
                any(p is m.weight for p in other.parameters(recurse=False))]
        if include is not None and not any(_matches(n, include) for n in all_names):
            why = "not in include"
        elif any(_matches(n, exclude) for n in all_names):
            why = "excluded"
        elif isinstance(parents.get(key), _DIRECT_WEIGHT_PARENTS):
            why = f"its parent {type(parents[key]).__name__} reads the weight directly"
        elif tied:
            why = f"its weight is shared with {', '.join(tied)} (tied weights)"
        elif key == last and include is None:
            why = "final classifier"
        elif _is_lazy(m):
            why = _LAZY
        elif parametrize.is_parametrized(m):
            why = f"parametrized ({', '.join(m.parametrizations)}): a SparseLinear would drop the parametrization"
        elif type(m) is not nn.Linear:
            why = f"{type(m).__name__} is a subclass of nn.Linear: a SparseLinear would drop its own behaviour"
        elif _hooks(m):
            why = f"it has {' and '.join(_hooks(m))}: a SparseLinear would not call them"
        elif m.in_features % groups or m.out_features % groups:
            why = f"groups={groups} does not divide {m.in_features}->{m.out_features}"
        else:
            why = None
        shared = f", shared by {len(all_names)} places" if len(all_names) > 1 else ""
        decisions.append(Decision(name, why is None, why or f"G2G SparseLinear{shared}", tuple(all_names[1:])))
    return decisions


def explain(decisions: list[Decision]) -> str:
    """The plan as one line per linear layer."""
    return "\n".join(f"{d.name}: {'replaced' if d.replace else 'kept'} ({d.reason})" for d in decisions)


def _post_for(name: str, post_activation) -> Callable | None:
    if post_activation is None or not isinstance(post_activation, dict):
        return post_activation
    hits = [act for pattern, act in post_activation.items() if fnmatch.fnmatchcase(name, pattern)]
    return hits[0] if hits else None


@torch.no_grad()
def sparsify(
    model: nn.Module,
    *,
    groups: int = _MODEL.groups,
    p_intra: float = _MODEL.p_intra,
    p_inter: float = _MODEL.p_inter,
    grouping: str = "random",
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    seed: int = 0,
    post_activation: Callable | dict[str, Callable] | None = None,
    verbose: bool = False,
) -> nn.Module:
    """Replace the selected ``nn.Linear`` modules of ``model`` by G2G ``SparseLinear`` layers, in
    place, and return the model.

    Selection: see ``plan`` (every ``nn.Linear`` whose widths ``groups`` divides, except a final
    classifier, layers read directly by their parent and tied weights); ``include`` / ``exclude``
    are glob patterns on qualified module names (``include`` also admits a final classifier).
    Each replaced layer gets group ids by ``grouping`` (``random``, ``index`` or ``mixer``,
    counted over the replaced layers in module order), a modular mask, and the old weights on
    its active connections (no rescaling). ``post_activation``: the non-linearity that follows
    the replaced layers where the model applies it in ``forward()`` (a function or module, or a
    dict from name pattern to one); the default finds it in the model's structure. ``verbose``
    prints the plan; a warning says so when no layer is replaced.
    """
    _check_module(model, "sparsify")
    seed = coerce(seed, int, "seed")
    schemes = lookup(GROUPINGS, grouping, "grouping")
    if post_activation is not None and not callable(post_activation) and not isinstance(post_activation, dict):
        raise G2GError(f"post_activation must be a function, a module or a dict of them, got {post_activation!r}")
    decisions = plan(model, groups, include, exclude)
    lazy = [d.name for d in decisions if d.reason == _LAZY]
    if lazy:
        raise G2GError(f"{', '.join(lazy)}: lazy layers must be materialised before sparsify (run one forward "
                       "pass so their widths are known), or leave them out with exclude")
    chosen = [d for d in decisions if d.replace]
    if include is not None and not chosen:
        named = [f"{d.name}: {d.reason}" for d in decisions if d.reason != "not in include"]
        raise G2GError(f"include {include} selects no layer sparsify can replace"
                       + (f" ({'; '.join(named)})" if named else " (it names no nn.Linear)"))
    for d in chosen:
        if model.get_submodule(d.name).weight.device.type == "meta":
            raise G2GError(f"{d.name} is on the meta device: sparsify needs the weights' values "
                           "(materialise the model first, e.g. model.to_empty(device='cpu') and its init)")
    if verbose:
        print(explain(decisions))
    if not chosen:
        warnings.warn(f"sparsify replaced no layer: {'; '.join(f'{d.name}: {d.reason}' for d in decisions) or 'no nn.Linear'}",
                      stacklevel=2)
    gen = torch.Generator().manual_seed(seed)
    for index, d in enumerate(chosen):
        old = model.get_submodule(d.name)
        out_scheme, in_scheme = schemes(index)
        og = group_ids(old.out_features, groups, out_scheme, gen)
        ig = group_ids(old.in_features, groups, in_scheme, gen)
        mask = modular_mask(og, ig, p_intra, p_inter, gen)
        # Its initial values are overwritten by the old weights: drawn from a throwaway generator,
        # so sparsify leaves the global RNG as it was.
        new = SparseLinear(old.in_features, old.out_features, mask, bias=old.bias is not None,
                           in_groups=ig, out_groups=og, generator=torch.Generator())
        # On the old weight's device and dtype first: loading into the default float32 would
        # round a float64 model's weights.
        new.to(device=old.weight.device, dtype=old.weight.dtype)
        new.load_dense_(old.weight, old.bias)
        new.packed.requires_grad_(old.weight.requires_grad)
        if new.bias is not None:
            new.bias.requires_grad_(old.bias.requires_grad)
        new.train(old.training)
        new.post_activation = _post_for(d.name, post_activation) or _following_activation(model, d.name)
        for name in (d.name, *d.also):  # every place that held the module: a shared layer stays shared
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
    return model


def _weight_requires_grad(layer: SparseLinear, name: str) -> bool:
    """Whether ``layer``'s weight trains: the flag its packed parameters (``intra`` and ``values``)
    share. An ``nn.Linear`` has one weight, so where they disagree that is an error, not a guess
    (parameters with no entries hold no weight and do not count)."""
    params = dict(layer.packed.named_parameters())
    held = {n: p for n, p in params.items() if p.numel()} or params
    flags = {p.requires_grad for p in held.values()}
    if len(flags) > 1:
        which = ", ".join(f"{n}.requires_grad={p.requires_grad}" for n, p in held.items())
        raise G2GError(f"{name or 'the layer'}: its packed weights disagree ({which}); an nn.Linear has one "
                       "weight, so freeze or unfreeze them together first (layer.packed.requires_grad_(...))")
    return flags.pop() if flags else True


def to_linear(layer: SparseLinear, name: str = "") -> nn.Linear:
    """An ``nn.Linear`` with ``layer``'s effective weight (0 off the mask) and bias, trainable as the
    layer was: the weight as the packed parameters (``intra`` and ``values``, which must agree),
    the bias as ``layer.bias``. ``name`` names the layer in errors."""
    if not isinstance(layer, SparseLinear):
        raise G2GError(f"to_linear needs a SparseLinear, got {type(layer).__name__}")
    weight_grad = _weight_requires_grad(layer, name)
    w = layer.weight.detach()
    dense = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, device=w.device,
                      dtype=w.dtype)
    with torch.no_grad():
        dense.weight.copy_(w)
        if layer.bias is not None:
            dense.bias.copy_(layer.bias)
    dense.weight.requires_grad_(weight_grad)
    if layer.bias is not None:
        dense.bias.requires_grad_(layer.bias.requires_grad)
    return dense.train(layer.training)


def densify(model: nn.Module) -> nn.Module:
    """Replace every ``SparseLinear`` of ``model`` by an ``nn.Linear`` with its effective weight
    (0 off the mask) and bias, in place, and return the model (shared layers stay shared). Every
    layer is converted before any is replaced, so an error leaves the model as it was."""
    _check_module(model, "densify")
    done: dict[int, nn.Linear] = {}
    places = []
    for name, m in list(model.named_modules(remove_duplicate=False)):
        if isinstance(m, SparseLinear):
            if id(m) not in done:
                done[id(m)] = to_linear(m, name)
            places.append((name, done[id(m)]))
    for name, dense in places:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, dense)
    return model


def summary(model: nn.Module) -> str:
    """One line per linear layer: sparse (shape, density, ensembles, post activation) or dense,
    with totals."""
    _check_module(model, "summary")
    lines, active, dense_total = [], 0, 0
    for name, m in model.named_modules():
        if isinstance(m, SparseLinear):
            g = "" if m.in_groups is None else f", {int(m.in_groups.max()) + 1} ensembles"
            post = m.post_activation
            post = "raw output" if post is None else getattr(post, "__name__", None) or type(post).__name__
            lines.append(f"{name}: SparseLinear {m.in_features}->{m.out_features}, density {m.density:.3f}{g}, "
                         f"Hebbian post = {post}")
            active += m.nnz
            dense_total += m.in_features * m.out_features
        elif isinstance(m, nn.Linear):
            lines.append(f"{name}: dense nn.Linear {m.in_features}->{m.out_features}")
    if dense_total:
        lines.append(f"sparse layers: {active:,} of {dense_total:,} weights active ({active / dense_total:.3f})")
    return "\n".join(lines)
