"""Tensors derived on every access, that refuse to be written (SPEC §9: never silently wrong).

``SparseLinear.weight`` and ``.mask`` are rebuilt from the packed storage at each access, so a
write into one (``nn.init.*_(layer.weight)``, ``layer.weight.data.copy_(w)``, ``layer.mask[0] =
False``) would change a throw-away copy and leave the layer as it was, without a word. Such a
tensor is returned as ``Derived``: reading it, computing with it and differentiating through it
work as with any tensor (results are plain tensors); an in-place operation on it or on any view
of it (``.data``, ``.detach()``, indexing, ``view``, ...) raises a one-line ``G2GError`` that
says what to call instead. What cannot be caught: memory reached outside torch
(``.numpy()``, ``data_ptr``). A conversion that returns the same memory (``.cpu()`` of a CPU
layer's weight, ``.float()`` of a float one) stays read-only, as it would alias nn.Linear's weight;
``.clone()`` gives a copy of one's own. ``torch.compile(fullgraph=True)`` does not take a Derived
tensor as an argument: read ``layer.weight`` inside the compiled function, or pass a clone.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import G2GError

# Tensor methods ending in "_" that do not write the tensor's values.
_NOT_WRITES = frozenset({"requires_grad_", "retain_grad", "share_memory_"})
_DATA_SET = Tensor.data.__set__
_INPLACE_DUNDERS = frozenset({"__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__",
                              "__imod__", "__ipow__", "__iand__", "__ior__", "__ixor__", "__ilshift__",
                              "__irshift__", "__imatmul__"})


def _written(func, args: tuple, kwargs: dict):
    """The tensor(s) ``func`` writes into: its ``out``, or its first argument if it is in place (a
    method ending in "_", an augmented assignment, item assignment, ``inplace=True``)."""
    if "out" in kwargs:
        return kwargs["out"]
    name = getattr(func, "__name__", "")
    inplace = func == _DATA_SET or name in _INPLACE_DUNDERS or kwargs.get("inplace") is True or (
        name.endswith("_") and not name.endswith("__") and name not in _NOT_WRITES)
    if not inplace:
        return None
    return args[0] if args else next(iter(kwargs.values()), None)  # torch.nn.init passes tensor=...


def _derived_in(tree) -> list[Derived]:
    """The Derived tensors in ``tree`` (arguments, possibly nested in lists, tuples, dicts)."""
    found, stack = [], [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, Derived):
            found.append(item)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return found


def _storages(tensors: list[Derived]) -> set[int]:
    """Storage addresses of ``tensors``."""
    with torch._C.DisableTorchFunctionSubclass():
        return {t.untyped_storage().data_ptr() for t in tensors}


class Derived(Tensor):
    """A tensor computed from a layer's storage; see the module doc. ``advice`` says what to call
    to change the layer instead."""

    advice: str = "change the layer's own parameters"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        written = _derived_in(_written(func, args, kwargs))
        if written:
            advice = written[0].advice
            raise G2GError(f"this tensor is derived from the layer at each access: writing into it "
                           f"({getattr(func, '__name__', func)}) would not change the layer; {advice} (for a "
                           f"copy of your own to write, .clone() it)")
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*args, **kwargs)
        if not isinstance(out, (Tensor, tuple, list)):
            return out
        found = _derived_in((args, kwargs))
        if not found:
            return out
        shared, advice = _storages(found), found[0].advice
        if isinstance(out, Tensor):
            return _keep_views(out, shared, advice)
        return type(out)(_keep_views(o, shared, advice) if isinstance(o, Tensor) else o for o in out)

    def __repr__(self, **kwargs) -> str:  # shown as the tensor it is
        return Tensor.__repr__(self._plain(), **kwargs)

    # Saved and copied as the plain tensor it is (torch.load(weights_only=True) reads it back;
    # a copy is the caller's own, to write).
    def __reduce_ex__(self, proto):
        return self._plain().__reduce_ex__(proto)

    def __deepcopy__(self, memo):
        return self._plain().__deepcopy__(memo)

    def _plain(self) -> Tensor:
        with torch._C.DisableTorchFunctionSubclass():
            return self.as_subclass(Tensor)


def _keep_views(out: Tensor, shared: set[int], advice: str) -> Tensor:
    """``out`` as a Derived tensor where it shares memory with a Derived input (a view, ``.data``,
    ``.detach()``: writing into it would be as lost), else as it is."""
    if _plain_array(out) and out.untyped_storage().data_ptr() in shared:
        return derived(out, advice)
    return out


def _plain_array(t: Tensor) -> bool:
    """Whether ``t`` is an ordinary strided tensor with memory of its own kind (not sparse, not a
    fake or meta tensor, not wrapped by a torch.func transform): the only kind ``Derived`` wraps."""
    return (type(t) is Tensor and t.layout == torch.strided and t.device.type != "meta"
            and not torch._C._functorch.is_functorch_wrapped_tensor(t))


def derived(t: Tensor, advice: str) -> Tensor:
    """``t`` (freshly computed; autograd history kept) as a ``Derived`` tensor with ``advice``;
    ``t`` itself while torch.compile traces (its tracer does not take this subclass), under a fake
    tensor mode and inside torch.func transforms (``_plain_array``)."""
    if torch.compiler.is_compiling() or not _plain_array(t):
        return t
    out = t.as_subclass(Derived)
    out.advice = advice
    return out
