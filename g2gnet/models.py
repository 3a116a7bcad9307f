"""The networks of SPEC §2: G2GNet in its three groupings and the baselines of Table I, plus the
MLP-Mixers of ``mixer`` (beyond the paper), in one registry ``MODELS``.

The MLPs are ``frontend -> [linear -> ReLU] x depth -> dense classifier``; only the hidden linear
layers differ (dense, Erdős–Rényi mask or G2G modular mask). A model is fully determined by its
name, options (``ModelConfig``) and ``seed`` (masks, group permutations and initial weights).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
from torch.nn.modules import module as nn_module

from .config import Config, ModelConfig, coerce
from .data.datasets import DATASETS
from .errors import G2GError, lookup
from .kernels import dispatch, ops
from .kernels.chain import infer_chain, stack_plan
from .layers import SparseLinear
from .malloc import trim
from .mixer import build_mixer, build_mixer_g2g, check_mixer_options
from .topology import er_mask, expected_density, fit_tile, modular_mask, network_groups


class PatchEncoder(nn.Module):
    """Conv with kernel = stride = H/4 and 32 channels: a 4x4 grid of patches -> 512 features."""

    CHANNELS = 32
    OUT_FEATURES = CHANNELS * 16

    def __init__(self, input_shape: tuple[int, int, int]) -> None:
        super().__init__()
        c, h, w = input_shape
        if h != w or h % 4:
            raise G2GError(f"patch frontend needs square images with side divisible by 4, got {h}x{w}")
        self.kernel = h // 4
        self.conv = nn.Conv2d(c, self.CHANNELS, self.kernel, stride=self.kernel)
        self.out_features = self.OUT_FEATURES

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)).flatten(1)


class HiddenBlock(nn.Module):
    """linear -> ReLU (-> dropout). A SparseLinear learns that ReLU follows it: DST's Hebbian
    'post' activity is the activity after the non-linearity, before dropout."""

    def __init__(self, linear: nn.Module, dropout: float = 0.0) -> None:
        super().__init__()
        self.linear = linear
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if isinstance(linear, SparseLinear):
            linear.post_activation = self.act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.act(self.linear(x)))


class MLP(nn.Module):
    """frontend -> hidden blocks -> dense classifier. ``x`` may be images [B,C,H,W] or flat."""

    def __init__(self, frontend: nn.Module, blocks: list[HiddenBlock], head: nn.Linear) -> None:
        super().__init__()
        self.frontend = frontend
        self.blocks = nn.Sequential(*blocks)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (Submodules read from ``_modules``: an attribute of an nn.Module that is a submodule costs a
        # failed lookup first, ~1 µs each, and serving one request asks for a dozen.)
        mods = self._modules
        h = mods["frontend"](x).flatten(1)
        path = self._stack_path(h)
        if path is None:
            h = mods["blocks"](h)
        else:
            layers = [b._modules["linear"] for b in mods["blocks"]._modules.values()]
            h = (infer_chain if path == "infer" else stack_plan)(self.__dict__, layers)(layers, h)
        return mods["head"](h)

    def __getstate__(self) -> dict:  # deepcopy / pickle: the plans are rebuilt on use
        state = dict(self.__dict__)
        state.pop("_stack_plan", None)
        state.pop("_infer_chains", None)
        return state

    def stacked(self, x: torch.Tensor) -> bool:
        """Whether ``self(x)`` runs its hidden blocks as one stack (in the current grad mode; see
        ``_stack_path``)."""
        return self._stack_path(self.frontend(x).flatten(1)) is not None

    def _stack_path(self, h: torch.Tensor) -> str | None:
        """How the hidden blocks run as one: "infer" (at most ``INFER_MAX_BATCH`` rows, no gradient:
        ``kernels.chain.InferChain``), "native" (more rows, or a gradient to record:
        ``kernels.chain.StackPlan``), or None (the modules in turn). Either stack gives the numbers
        of the modules called in turn, so one is taken only where calling the modules would do
        nothing more: every block a SparseLinear on the same native path followed by a plain ReLU
        and an identity (nn.Identity, or nn.Dropout in eval mode), no autocast, and no hook, forward
        or backward, anywhere that calling the modules would run. (The cheap tests first: serving
        asks this at every call.)"""
        if not ops.direct_ok():  # first: a compiled graph must not guard on the batch size here
            return None
        if h.dim() != 2 or h.dtype is not torch.float32:
            return None
        if torch.is_autocast_enabled("cpu") or torch._C._are_functorch_transforms_active():
            return None  # (under torch.func transforms the modules run, and fail or not as they would)
        if (nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks
                or nn_module._global_backward_hooks or nn_module._global_backward_pre_hooks):
            return None
        blocks = self._modules["blocks"]
        if not len(blocks) or _hooked(blocks):
            return None
        path = None
        for b in blocks._modules.values():
            if type(b) is not HiddenBlock:
                return None
            parts = b._modules
            linear, act, drop = parts["linear"], parts["act"], parts["drop"]
            if type(act) is not nn.ReLU or not (type(drop) is nn.Identity or (type(drop) is nn.Dropout
                                                                            and not drop.training)):
                return None
            if not isinstance(linear, SparseLinear):
                return None
            p = dispatch.choose(linear, h)
            if p is None or (path is not None and p != path):
                return None
            path = p
            if _hooked(b) or _hooked(linear) or _hooked(act) or _hooked(drop):
                return None
        return path


def _hooked(m: nn.Module) -> bool:
    """Whether calling ``m`` runs a hook of its own (forward, or backward: a stack's one autograd
    node would skip a layer's backward hooks)."""
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks)


def _dense(n_in: int, n_out: int, gen: torch.Generator) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    with torch.no_grad():  # nn.Linear's own init, but from our generator (seeded models)
        nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=gen)
        bound = 1.0 / math.sqrt(n_in)
        nn.init.uniform_(layer.bias, -bound, bound, generator=gen)
    return layer


def _flat_frontend(input_shape: tuple[int, int, int], gen: torch.Generator) -> tuple[nn.Module, int]:
    return nn.Flatten(), math.prod(input_shape)


def _patch_frontend(input_shape: tuple[int, int, int], gen: torch.Generator) -> tuple[nn.Module, int]:
    enc = PatchEncoder(input_shape)
    with torch.no_grad():
        nn.init.kaiming_uniform_(enc.conv.weight, a=math.sqrt(5), generator=gen)
        fan_in = enc.conv.weight[0].numel()
        nn.init.uniform_(enc.conv.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in), generator=gen)
    return enc, enc.out_features


FRONTENDS = {"none": _flat_frontend, "patch": _patch_frontend}


def _mlp(opts: ModelConfig, input_shape: tuple[int, int, int], num_classes: int, gen: torch.Generator,
         hidden: Callable[[list[int]], list[nn.Module]]) -> MLP:
    """frontend -> the hidden layers ``hidden(widths)`` makes for the widths from the front end's
    output on -> dense classifier, drawn from ``gen`` in that order (the models' seeded draw order)."""
    frontend, n_in = lookup(FRONTENDS, opts.frontend, "frontend")(input_shape, gen)
    widths = [n_in, *opts.hidden]
    blocks = [HiddenBlock(layer, opts.dropout) for layer in hidden(widths)]
    return MLP(frontend, blocks, _dense(widths[-1], num_classes, gen))


def _pairs(widths: list[int]) -> list[tuple[int, int]]:
    """(in, out) of each hidden layer."""
    return list(zip(widths[:-1], widths[1:]))


def _build_dense(opts: ModelConfig, input_shape: tuple[int, int, int], num_classes: int, gen) -> MLP:
    return _mlp(opts, input_shape, num_classes, gen, lambda widths: [_dense(a, b, gen) for a, b in _pairs(widths)])


def matched_width(opts: ModelConfig, n_in: int, num_classes: int) -> int:
    """Hidden width of a dense net whose parameter count matches the sparse net's active ones.

    The sparse count uses the expected density, so the width does not depend on the seed
    (e.g. 447 for 784 inputs, 3x1024, G=8, p_inter=0.15). All hidden layers get this width.
    """
    widths = [n_in, *opts.hidden]
    d = expected_density(opts.groups, opts.p_intra, opts.p_inter)
    target = sum(d * a * b + b for a, b in zip(widths[:-1], widths[1:]))
    target += widths[-1] * num_classes + num_classes
    depth = len(opts.hidden)

    def dense_params(h: int) -> int:
        return n_in * h + h + (depth - 1) * (h * h + h) + h * num_classes + num_classes

    lo, hi = 1, max(widths)
    while lo < hi:  # smallest h with dense_params(h) >= target; the count is increasing in h
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if dense_params(mid) < target else (lo, mid)
    candidates = [h for h in (lo - 1, lo) if h >= 1]
    return min(candidates, key=lambda h: abs(dense_params(h) - target))


def _build_dense_matched(opts: ModelConfig, input_shape: tuple[int, int, int], num_classes: int, gen) -> MLP:
    n_in = PatchEncoder.OUT_FEATURES if opts.frontend == "patch" else math.prod(input_shape)
    h = matched_width(opts, n_in, num_classes)
    matched = dataclasses.replace(opts, hidden=(h,) * len(opts.hidden))
    return _build_dense(matched, input_shape, num_classes, gen)


def _build_er(opts: ModelConfig, input_shape: tuple[int, int, int], num_classes: int, gen) -> MLP:
    density = expected_density(opts.groups, opts.p_intra, opts.p_inter)
    return _mlp(opts, input_shape, num_classes, gen, lambda widths: [
        SparseLinear(a, b, er_mask(b, a, density, gen), generator=gen) for a, b in _pairs(widths)])


def _g2g_builder(grouping: str):
    def build(opts: ModelConfig, input_shape: tuple[int, int, int], num_classes: int, gen) -> MLP:
        return _mlp(opts, input_shape, num_classes, gen, lambda widths: _g2g_layers(opts, widths, grouping, gen))

    build.__doc__ = f"G2GNet with the {grouping!r} grouping (SPEC §2)."
    return build


def _g2g_layers(opts: ModelConfig, widths: list[int], grouping: str, gen: torch.Generator) -> list[SparseLinear]:
    layers = []
    groups = network_groups(widths, opts.groups, grouping, gen)  # every layer's, before any mask
    for layer, ((a, b), lg) in enumerate(zip(_pairs(widths), groups)):
        smallest = min(a, b) // opts.groups
        if opts.inter_tile > smallest:  # one tile per group pair: the density would be a lottery
            raise G2GError(f"inter_tile={opts.inter_tile} is larger than the ensembles ({smallest} units) "
                           f"of sparse layer {layer + 1}; use at most {smallest}")
        # Hidden ensembles take the tile as asked; only the first layer's input side (the data's
        # width, e.g. 784 = 8 x 98) is fitted. Fitting hidden sides too made inter_tile=5 and 6
        # build the very model of inter_tile=4 at 1024 wide, under other names.
        if (b // opts.groups) % opts.inter_tile:
            raise G2GError(f"inter_tile={opts.inter_tile} does not divide the ensembles ({b // opts.groups} units) "
                           f"of sparse layer {layer + 1}; use a divisor, e.g. {fit_tile(b // opts.groups, opts.inter_tile)}")
        tile = (fit_tile(b // opts.groups, opts.inter_tile), fit_tile(a // opts.groups, opts.inter_tile))
        mask = modular_mask(lg.out_groups, lg.in_groups, opts.p_intra, opts.p_inter, gen, tile)
        layers.append(SparseLinear(a, b, mask, in_groups=lg.in_groups, out_groups=lg.out_groups, generator=gen))
    return layers


MODELS = {
    "dense": _build_dense,
    "dense-matched": _build_dense_matched,
    "er": _build_er,
    "g2g-index": _g2g_builder("index"),
    "g2g-random": _g2g_builder("random"),
    "g2g-mixer": _g2g_builder("mixer"),
    "mlp-mixer": build_mixer,
    "mlp-mixer-g2g": build_mixer_g2g,
}

# Checks of a model's options beyond their ranges (ModelConfig), by model name.
_OPTION_CHECKS = {"mlp-mixer": check_mixer_options, "mlp-mixer-g2g": check_mixer_options}
# Options a model does not read. A run records them at their defaults (``used_options``): set to
# anything else, they labelled a run (its config, its row in a report) with a setting that did not
# shape it, and a grid over them trained the same model again under other names.
_UNUSED = {"dense": ("groups", "p_intra", "p_inter", "inter_tile"), "dense-matched": ("inter_tile",),
           "er": ("inter_tile",), "mlp-mixer": ("groups", "p_intra", "p_inter")}


def used_options(opts: ModelConfig) -> tuple[ModelConfig, list[str]]:
    """``opts`` with the options its model does not read at their defaults, and the names of
    those that were set otherwise (for the caller to say so)."""
    defaults = ModelConfig()
    unused = [k for k in _UNUSED.get(opts.name, ()) if getattr(opts, k) != getattr(defaults, k)]
    return dataclasses.replace(opts, **{k: getattr(defaults, k) for k in unused}), unused


def check_options(opts: ModelConfig, input_shape: tuple[int, ...]) -> None:
    """Everything about a model's options that can be checked without building it: its name,
    front end, and what that model can use. ``build_model`` calls it, and so does the check of a
    run's config before anything is written (and of every sweep cell before any runs)."""
    lookup(MODELS, opts.name, "model")
    lookup(FRONTENDS, opts.frontend, "frontend")
    check = _OPTION_CHECKS.get(opts.name)
    if check is not None:
        check(opts, input_shape)


# Flat inputs of a registered dataset's size are its images (a front end may need their shape).
_KNOWN_SHAPES = {math.prod(info.shape): info.shape for info in DATASETS.values()}


def build_model(
    name: str,
    in_features: int,
    num_classes: int,
    model: ModelConfig | None = None,
    *,
    input_shape: tuple[int, int, int] | None = None,
    seed: int = 0,
    **options: Any,
) -> nn.Module:
    """Build a model of SPEC §2 by name. ``model`` gives its options (a ``ModelConfig``; its own
    ``name`` is replaced by ``name``, so one section builds a model and its dense baseline), and
    loose ``options`` are fields of ``ModelConfig`` (hidden, groups, p_intra, p_inter, frontend,
    inter_tile, dropout) over it, checked there; ``seed`` fixes masks, group permutations and
    initial weights. ``input_shape`` (C, H, W) is needed by the ``patch`` front end and the mixers,
    and inferred for the input sizes of the registered datasets (784: 1x28x28, 3072: 3x32x32).
    """
    builder = lookup(MODELS, name, "model")
    if model is not None and not isinstance(model, ModelConfig):
        raise G2GError(f"model must be a ModelConfig (or left out, with options as keywords), got "
                       f"{type(model).__name__}")
    opts = (model if model is not None else ModelConfig()).replace(name=name, **options)
    in_features = coerce(in_features, int, "in_features")
    num_classes = coerce(num_classes, int, "num_classes")
    seed = coerce(seed, int, "seed")
    if in_features < 1 or num_classes < 2:
        raise G2GError(f"need in_features >= 1 and num_classes >= 2, got {in_features}, {num_classes}")
    if input_shape is None:
        input_shape = _KNOWN_SHAPES.get(in_features, (1, 1, in_features))
    if math.prod(input_shape) != in_features:
        raise G2GError(f"input_shape {input_shape} does not have {in_features} elements")
    check_options(opts, tuple(input_shape))
    gen = torch.Generator().manual_seed(seed)
    built = builder(opts, tuple(input_shape), num_classes, gen)
    trim()  # the masks and layouts of the build are garbage now; give their pages back
    return built


def build_from_config(cfg: Config, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The model of a run's configuration for inputs of ``input_shape`` (C, H, W) and ``num_classes``
    classes: ``cfg.model`` seeded by ``cfg.train.seed``. Training builds it so, and so do loading a
    run, a report's mask picture and a benchmark's epochs, which must get the same model."""
    shape = tuple(input_shape)
    return build_model(cfg.model.name, math.prod(shape), num_classes, cfg.model, input_shape=shape,
                       seed=cfg.train.seed)
