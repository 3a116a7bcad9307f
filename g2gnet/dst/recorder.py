"""Forward hooks that collect what the data-driven criteria need during ordinary training.

Two kinds of evidence, both gathered from the training forward/backward itself (no extra pass)
and only while ``recording`` is set, i.e. on the batches of the window before an update:

- activity (Hebbian): running sums of pre = the layer's input and post = its output after the
  non-linearity that follows it (``layer.post_activation``, set by the model builders and by
  ``sparsify``). Recording never changes what the model computes: when the non-linearity is a
  module of the model, its own output is read by a hook on it (never applied again, which
  an in-place activation would corrupt); a plain function is applied to a detached copy; with
  none, post is the raw output.
- gradient (RigL): the forward masks the weight, so ``weight.grad`` is zero off the mask. The
  gradient of the loss w.r.t. the effective (masked-product) weight is grad_out^T @ x, taken
  from a tensor hook on the layer's output.

Outside the window no hook is registered (``Recorder.recording``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from ..distributed import active, all_reduce_sum_, gather_all, rank_and_size
from ..layers import SparseLinear
from .hebbian import ActivityStats, outer_sum


class Recorder:
    """Owns the hooks and the evidence accumulated since the last reset (one entry per layer)."""

    def __init__(self, layers: dict[str, SparseLinear], *, activity: bool, gradient: bool):
        self.layers = layers
        self.activity: dict[str, ActivityStats] = {n: ActivityStats() for n in layers} if activity else {}
        self.grad: dict[str, Tensor | None] = {n: None for n in layers} if gradient else {}
        self._handles = []
        # Layers whose input waits for the output of their activation module, per module (one
        # module may follow several layers, e.g. a shared nn.ReLU): first in, first out.
        self._pending: dict[int, list[tuple[str, Tensor]]] = {}
        self._recording = self._closed = False

    @property
    def recording(self) -> bool:
        return self._recording

    @recording.setter
    def recording(self, on: bool) -> None:
        """The hooks are registered only while recording (a window's batches before an update): a
        model with a hook anywhere runs its layers one by one (``models.MLP`` stacks them only when
        calling the modules would do nothing more), so hooks kept for the whole run took the stacks
        from every other training step and every evaluation."""
        on = bool(on) and not self._closed
        if on and not self._handles:
            self._attach()
        elif not on and self._handles:
            self._detach()
        self._recording = on

    def _attach(self) -> None:
        # Prepended: the recorder sees what the layer and its activation computed, before any hook of
        # the user's (registered before or after, or between two windows) replaces an output.
        if self.activity:
            for name, layer in self.layers.items():
                act = layer.post_activation
                self._handles.append(layer.register_forward_hook(self._activity_hook(name, act), prepend=True))
                if isinstance(act, nn.Module) and id(act) not in self._pending:
                    self._pending[id(act)] = []
                    self._handles.append(act.register_forward_hook(self._post_hook(id(act)), prepend=True))
        if self.grad:
            for name, layer in self.layers.items():
                self._handles.append(layer.register_forward_hook(self._gradient_hook(name), prepend=True))

    def _detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._pending.clear()  # (a post output still awaited belongs to no recorded forward)

    def _wanted(self, module: nn.Module) -> bool:
        # Only the training forward counts: evaluation and no_grad passes (e.g. FLOP counting)
        # must not leak into the statistics.
        return self.recording and module.training and torch.is_grad_enabled()

    def _activity_hook(self, name: str, act):
        def hook(module: SparseLinear, args: tuple, output: Tensor) -> None:
            if not self._wanted(module):
                return
            if isinstance(act, nn.Module):  # post comes from the activation's own forward
                self._pending[id(act)].append((name, args[0].detach()))
                return
            with torch.no_grad():
                post = output.detach() if act is None else act(output.detach().clone())
                self.activity[name].update(args[0], post)

        return hook

    def _post_hook(self, key: int):
        def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            pending = self._pending[key]
            if pending:  # empty when the module runs after a layer that is not recorded
                name, pre = pending.pop(0)
                self.activity[name].update(pre, output.detach())

        return hook

    def _gradient_hook(self, name: str):
        def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            if not (self._wanted(module) and output.requires_grad):
                return
            x = args[0].detach()

            def on_grad(grad_out: Tensor) -> None:
                self._add_grad(name, x, grad_out)

            output.register_hook(on_grad)

        return hook

    @torch.no_grad()
    def _add_grad(self, name: str, x: Tensor, grad_out: Tensor) -> None:
        x = x.reshape(-1, x.shape[-1])
        g = grad_out.reshape(-1, grad_out.shape[-1])
        dense = outer_sum(g, x)  # dL/dW for every position, summed over the samples
        prev = self.grad[name]
        self.grad[name] = dense if prev is None else prev.add_(dense)

    @torch.no_grad()
    def all_reduce(self) -> None:
        """Combine the evidence of all data-parallel ranks: Hebbian sums add up, and the recorded
        gradients (each of a rank's loss, scaled to the global batch) average, so every rank
        scores the global batch as one process would."""
        for stats in self.activity.values():
            if stats.n:
                n = torch.tensor([float(stats.n)], dtype=torch.float64, device=stats.sxy.device)
                all_reduce_sum_([stats.sxy, stats.sx, stats.sxx, stats.sy, stats.syy, n])
                stats.n = int(n.item())
        grads = [g for g in self.grad.values() if g is not None]
        if grads and active():
            all_reduce_sum_(grads)
            for g in grads:
                g.div_(torch.distributed.get_world_size())

    def reset(self) -> None:
        for pending in self._pending.values():
            pending.clear()
        for stats in self.activity.values():
            stats.reset()
        for name in self.grad:
            self.grad[name] = None

    def close(self) -> None:
        self.recording = False
        self._closed = True

    def state_dict(self) -> dict:
        """The evidence so far. Under torch.distributed a collective (every rank must call it): each
        rank holds the evidence of its own share of the window's batches, so the state is every
        rank's (``ranks``, in rank order, on the CPU), and ``load_state_dict`` gives each rank of a
        resume with as many processes its own back: the update then combines exactly what the
        uninterrupted run would have combined."""
        own = {
            "activity": {n: s.state_dict() for n, s in self.activity.items()},
            "grad": {n: (g.clone() if g is not None else None) for n, g in self.grad.items()},
        }
        if not active():
            return own
        return {"ranks": gather_all(_on_cpu(own))}

    def load_state_dict(self, state: dict, devices: dict[str, torch.device]) -> None:
        """Restore ``state_dict``'s evidence: each rank its own. A resume with another number of
        processes (or one process) gives all of it, combined as ``all_reduce`` combines it, to rank 0
        and none to the others, so the next update counts it once."""
        states = state["ranks"] if "ranks" in state else [state]
        rank, size = rank_and_size()
        mine = states[rank] if len(states) == size else _combined(states, size) if rank == 0 else None
        for name, stats in self.activity.items():
            stats.load_state_dict(mine["activity"][name] if mine else {"n": 0}, devices[name])
        for name in self.grad:
            g = mine["grad"][name] if mine else None
            self.grad[name] = None if g is None else g.to(devices[name]).clone()


def _on_cpu(state: dict) -> dict:
    # A state_dict's tensors on the CPU: gathered by pickling, a CUDA tensor would be rebuilt on the
    # sending rank's device in every process.
    return {part: {n: ({k: v.cpu() if torch.is_tensor(v) else v for k, v in x.items()} if isinstance(x, dict)
                       else None if x is None else x.cpu()) for n, x in entries.items()}
            for part, entries in state.items()}


def _combined(states: list[dict], size: int) -> dict:
    """The evidence of ``len(states)`` ranks as one rank of ``size`` holds it before an update's
    ``all_reduce``: Hebbian sums added up; recorded gradients averaged (each rank's scales to the
    global batch), times ``size`` (the update divides their sum by it)."""
    activity, grad = {}, {}
    for name in states[0]["activity"]:
        stats = ActivityStats()
        for st in states:
            part = ActivityStats()
            part.load_state_dict(st["activity"][name])
            stats.merge_(part)
        activity[name] = stats.state_dict()
    for name in states[0]["grad"]:
        parts = [st["grad"][name] for st in states if st["grad"][name] is not None]
        grad[name] = None if not parts else torch.stack(parts).sum(0) / len(states) * size
    return {"activity": activity, "grad": grad}
