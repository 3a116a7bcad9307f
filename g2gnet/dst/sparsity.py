"""``DynamicSparsity``: prune-and-regrow of every SparseLinear during training (SPEC §3).

Usage, once per training step::

    loss.backward(); optimizer.step(); stats = dst.step()   # stats is None between updates

The object owns the step counter, the schedule, the criteria, a CPU ``torch.Generator`` and the
hooks that record activity / gradients on the batches of the window before each update. All of
it is in ``state_dict()``, so a resumed run rewires exactly like an uninterrupted one.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn as nn

from ..config import DSTConfig, coerce
from ..distributed import check_same
from ..errors import G2GError, lookup
from ..layers import SparseLinear, sparse_layers
from ..malloc import trim
from ..stats import intra_fraction
from .criteria import GROW, PRUNE, Context
from .recorder import Recorder
from .rewire import rewire, set_mask_moving_state
from .schedule import Schedule


def _rewired(layers: dict[str, SparseLinear], optimizer: torch.optim.Optimizer | None) -> dict[str, SparseLinear]:
    """The layers DST rewires: those whose weights train. A frozen layer (no weight parameter
    requires grad) is left as it is; a layer with frozen and trainable weights, or with trainable
    weights outside the optimizer DST was given, is refused: DST would regrow connections there
    (at 0) that nothing trains."""
    in_optimizer = None if optimizer is None else {id(p) for g in optimizer.param_groups for p in g["params"]}
    out = {}
    for name, layer in layers.items():
        weights = (layer.packed.intra, layer.packed.values)
        trains = {p.requires_grad for p in weights}
        if trains == {False}:
            continue
        if len(trains) > 1:
            raise G2GError(f"DST: layer {name!r} has frozen and trainable weights (intra blocks and inter-group "
                           "values); freeze both (layer.requires_grad_(False)) to keep it out of DST, or neither")
        if in_optimizer is not None and any(id(p) not in in_optimizer for p in weights):
            raise G2GError(f"DST: layer {name!r} has trainable weights that are not in the optimizer given to "
                           "DynamicSparsity; add them, or freeze the layer (layer.requires_grad_(False)) to keep it "
                           "out of DST")
        out[name] = layer
    if not out:
        raise G2GError("DST: every SparseLinear of the model is frozen; there is nothing to rewire")
    return out


@torch.no_grad()
def _reserve(layer: SparseLinear, optimizer: torch.optim.Optimizer | None) -> bool:
    """Room in ``layer.values`` for every connection (``PackedWeight.reserve_``); when that makes
    ``values`` a new Parameter, the optimizer takes it in the old one's place, with its state
    padded along (Adam's moments: zeros for the new room). Whether it made a new Parameter."""
    swapped = layer.packed.reserve_(layer.nnz)
    if swapped is None:
        return False
    if optimizer is None:
        return True
    old, new = swapped
    grown = new.numel() - old.numel()
    for group in optimizer.param_groups:
        group["params"] = [new if p is old else p for p in group["params"]]
    state = optimizer.state.pop(old, None)
    if state is not None:
        optimizer.state[new] = {k: torch.cat([v, v.new_zeros(grown)]) if torch.is_tensor(v) and v.dim() == 1
                                and v.numel() == old.numel() else v for k, v in state.items()}
    return True


def _stream(seed: int) -> int:
    """The seed of DST's generator for ``seed``: not ``seed`` itself, whose stream (the model
    builders' for the same seed) drew the masks, so that DST's first ``random`` scores would replay
    the very uniforms that chose the connections (a random prune then favoured intra-group
    connections when p_intra < 1). One step of a 64-bit LCG (Knuth's MMIX constants) changes the low
    32 bits, which are all that torch's Mersenne Twister takes from a seed."""
    return (seed * 6364136223846793005 + 1442695040888963407) % 2**64


def _section(config: DSTConfig | None, settings: dict) -> DSTConfig:
    """What a ``DynamicSparsity`` runs: ``settings`` over ``config``, or over the defaults with the
    paper's rule; it must name a rule."""
    if config is None:
        config = DSTConfig.rule(**settings)
    elif isinstance(config, DSTConfig):
        config = config.replace(**settings)
    else:
        raise G2GError(f"config must be a DSTConfig (or left out, with prune=..., grow=... as keywords), got "
                       f"{type(config).__name__}")
    if not config.enabled:
        raise G2GError("DynamicSparsity needs a prune and a grow criterion; this DST config names none "
                       "(a static mask)")
    return config


class DynamicSparsity:
    """Dynamic sparse training of all SparseLinear layers of ``model``.

    Args:
        model, optimizer: the optimizer's state for the layer weights is reset where the mask
            changes, and it takes the longer ``values`` Parameter DST may give a layer (``None``: no
            optimizer state to reset; an optimizer must then be made after this object). DST
            rewires the layers whose weights train; frozen ones (``requires_grad_(False)``) stay
            as they are.
        config: the rule and schedule (``g2gnet.config.DSTConfig``, e.g. a run's ``cfg.dst``); it
            must name a prune and a grow criterion.
        settings: fields of ``DSTConfig`` as keywords, over ``config`` or, without one, over the
            defaults with the paper's rule (``DSTConfig.rule``): prune, grow (criteria names,
            ``PRUNE``, ``GROW``), interval, fraction, decay, stop (the ``Schedule``), window
            (training batches before each update whose activity or gradient is summed: 1, the
            paper-style last batch, or "all", the whole interval) and score ("cosine" or "pearson").
        total_steps: length of training, needed for a cosine decay or ``stop < 1``.
        seed: seed of the generator behind ``random`` and tie-breaking (its stream differs from a
            model builder's for the same seed).
        check: assert the rewiring invariants after every update (debugging).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        config: DSTConfig | None = None,
        *,
        total_steps: int | None = None,
        seed: int = 0,
        check: bool = False,
        **settings: Any,
    ) -> None:
        self.config = cfg = _section(config, settings)
        self.prune_fn = lookup(PRUNE, cfg.prune, "prune criterion")
        self.grow_fn = lookup(GROW, cfg.grow, "grow criterion")
        self.schedule = Schedule(cfg.interval, cfg.fraction, cfg.decay, cfg.stop, total_steps)
        self.window = None if cfg.window == "all" else cfg.window
        layers = dict(sparse_layers(model))
        if not layers:
            raise G2GError(f"DST needs a model with SparseLinear layers; {type(model).__name__} has none")
        self.layers = _rewired(layers, optimizer)
        self.optimizer = optimizer
        # Parameter shapes stay fixed while rewiring. Without an optimizer to update, one made
        # before this object (or any list of the model's parameters) still holds a replaced Parameter
        # and its step would never reach those inter-group weights: said, not silent.
        replaced = [name for name, layer in self.layers.items() if _reserve(layer, optimizer)]
        if replaced and optimizer is None:
            warnings.warn(f"DynamicSparsity made the inter-group values of {', '.join(replaced)} new, longer "
                          "Parameters (room to rewire); an optimizer made before it still holds the old ones and "
                          "would not train them: pass it as DynamicSparsity's optimizer, or make it afterwards",
                          stacklevel=2)
        # What a resumed run must match: the rule and the schedule (not the seed: its stream is in
        # the checkpoint).
        self.settings = {**cfg.to_dict(), "total_steps": total_steps}
        self.score, self.check = cfg.score, check
        self.generator = torch.Generator().manual_seed(_stream(coerce(seed, int, "seed")))
        self.step_count = 0
        self.ever_active = {n: layer.mask.clone() for n, layer in self.layers.items()}
        uses = {getattr(self.prune_fn, "needs", None), getattr(self.grow_fn, "needs", None)}
        raw = [n for n, layer in self.layers.items() if layer.post_activation is None]
        if "activity" in uses and raw:
            warnings.warn(f"DST's Hebbian rule reads the raw output of {', '.join(raw)} as 'post' activity: no "
                          "non-linearity is known to follow them (set layer.post_activation, or "
                          "sparsify(..., post_activation=...), before creating DynamicSparsity)", stacklevel=2)
        self.recorder = Recorder(self.layers, activity="activity" in uses, gradient="gradient" in uses)
        self._update_recording()

    # -- the training-loop entry point ------------------------------------------------------
    def step(self) -> dict | None:
        """Count one optimizer step; rewire if the schedule says so and return its statistics."""
        self.step_count += 1
        stats = None
        if self.schedule.is_update(self.step_count):
            stats = self._update(self.step_count)
            self.recorder.reset()
        self._update_recording()
        return stats

    def _update_recording(self) -> None:
        """Record during the next forward iff it is one of the window's batches before an update."""
        nxt = self.schedule.next_update(self.step_count)
        span = self.schedule.interval if self.window is None else min(self.window, self.schedule.interval)
        self.recorder.recording = (
            nxt is not None and nxt - self.step_count <= span and self.schedule.fraction_at(nxt) > 0
        )

    @torch.no_grad()
    def _update(self, step: int) -> dict:
        fraction = self.schedule.fraction_at(step)
        self.recorder.all_reduce()  # data-parallel ranks score the global batch (no-op alone)
        layers = {}
        for name, layer in self.layers.items():
            layers[name] = self._rewire_layer(name, layer, fraction)
            check_same(f"the DST mask of layer {name!r} after the update at step {step}", layer.packed.mask_bits)
        trim()  # the dense scores and layouts of the update are garbage now
        return {"step": step, "fraction": fraction, "layers": layers}

    def _rewire_layer(self, name: str, layer: SparseLinear, fraction: float) -> dict:
        evidence = self.recorder.activity.get(name), self.recorder.grad.get(name)
        old = layer.mask.clone()
        n = math.floor(fraction * int(old.sum()) + 0.5)  # round half up, not to even
        ctx = Context(self.generator, *evidence, score=self.score, name=name, n=n)
        if n == 0:  # nothing to swap (e.g. the end of a cosine decay): no scores, no RNG draws
            return self._layer_stats(name, layer, 0)
        keep, grow = self.prune_fn(layer, ctx), self.grow_fn(layer, ctx)
        new, pruned, grown = rewire(old, keep, grow, n, generator=self.generator)
        # Regrown connections start at 0 with zero optimizer state (RigL), pruned ones are gone.
        set_mask_moving_state(layer, new, self.optimizer, pruned | grown)
        self.ever_active[name] = self.ever_active[name].to(new.device) | new
        if self.check:
            self._check(name, layer, old, pruned, grown)
        return self._layer_stats(name, layer, int(torch.count_nonzero(grown)))

    def _layer_stats(self, name: str, layer: SparseLinear, changed: int) -> dict:
        """The topology statistics logged at every update (SPEC §3)."""
        return {
            "density": layer.density,
            "intra_fraction": intra_fraction(layer),
            "changed": changed,  # pruned = grown
            # in-time over-parameterisation: the share of all positions ever tried
            "ever_active": self.ever_active[name].float().mean().item(),
        }

    @staticmethod
    def _check(name: str, layer: SparseLinear, old, pruned, grown) -> None:
        problems = [
            (layer.nnz == int(torch.count_nonzero(old)), "active count changed"),
            (not (grown & old).any(), "an active position was regrown"),
            (not (pruned & ~old).any(), "an inactive position was pruned"),
            (not layer.weight[~layer.mask].any(), "a masked weight is non-zero"),
        ]
        for ok, what in problems:
            if not ok:
                raise RuntimeError(f"DST invariant broken in {name!r}: {what}")

    # -- lifecycle and checkpoints ----------------------------------------------------------
    def close(self) -> None:
        """Remove the hooks; the object must not be stepped afterwards."""
        self.recorder.close()

    def state_dict(self) -> dict:
        """Plain tensors, numbers and strings: loadable with ``torch.load(weights_only=True)``.
        Under torch.distributed a collective, which every rank must call (the recorder's evidence
        is each rank's own: ``Recorder.state_dict``)."""
        return {
            "step": self.step_count,
            "rng": self.generator.get_state(),
            "ever_active": {n: m.clone() for n, m in self.ever_active.items()},
            "recorder": self.recorder.state_dict(),
            "settings": dict(self.settings),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a ``state_dict``; the model's masks and weights come from its own state_dict."""
        try:
            saved, ever, recorder = state["settings"], state["ever_active"], state["recorder"]
            step, rng = int(state["step"]), state["rng"]
        except (KeyError, TypeError) as e:
            raise G2GError(f"not a DynamicSparsity state ({type(e).__name__}: {e})") from None
        diff = [f"{k}={saved.get(k)!r} (now {v!r})" for k, v in self.settings.items() if saved.get(k) != v]
        if diff:
            raise G2GError(f"DST checkpoint was taken with other settings: {', '.join(diff)}")
        if set(ever) != set(self.layers):
            raise G2GError(f"DST checkpoint has layers {sorted(ever)}; the model has {sorted(self.layers)}")
        for name, layer in self.layers.items():
            if ever[name].shape != layer.mask.shape:
                raise G2GError(
                    f"DST checkpoint layer {name!r} has shape {tuple(ever[name].shape)}; "
                    f"the model's is {tuple(layer.mask.shape)}"
                )
        # Everything checked: now change state.
        for name, layer in self.layers.items():
            self.ever_active[name] = ever[name].to(device=layer.mask.device, dtype=torch.bool).clone()
        self.step_count = step
        self.generator.set_state(rng.cpu())
        try:
            self.recorder.load_state_dict(recorder, {n: l.weight.device for n, l in self.layers.items()})
        except (KeyError, TypeError) as e:
            raise G2GError(f"DST checkpoint has incomplete recorder state: missing {e}") from None
        self._update_recording()
