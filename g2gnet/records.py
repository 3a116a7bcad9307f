"""The typed records of a run directory (SPEC §6): ``summary.json`` is a ``Summary``, each line of
``metrics.jsonl`` an ``EpochRecord`` (with the ``DSTUpdate`` of every rewiring in that epoch), and
``checkpoint.pt`` a ``Checkpoint``. The training loop builds them, ``runs`` writes them with
``to_dict()`` and reads them back with ``from_dict()``, which checks every field and names the file
and the key of a bad value. The library reads a run through the attributes.

Each record also reads as a ``Mapping`` of its JSON keys (``summary["test_acc"]``,
``summary.get("density")``): reports name a summary value by its key (a table column, a plotted
value: ``report.records.fact``), and code written against the plain dicts keeps working.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import G2GError


class Record(Mapping):
    """A frozen dataclass that converts to and from its JSON object.

    ``to_dict`` leaves out optional fields that are ``None`` (or empty), except those in
    ``_KEEP_NONE``; ``from_dict`` ignores keys it does not know (files written by a later
    version), fills absent optional fields with their defaults, and checks the type of the rest.
    """

    _KEEP_NONE: ClassVar[frozenset[str]] = frozenset()
    _FINITE: ClassVar[frozenset[str]] = frozenset()  # numbers a report relies on: NaN/inf is an error

    def _items(self) -> dict[str, Any]:
        """The JSON keys with the field values as they are (nested records stay records)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if (value is None or value == ()) and f.name not in self._KEEP_NONE and _has_default(f):
                continue
            out[f.name] = value
        return out

    def to_dict(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in self._items().items()}

    @classmethod
    def from_dict(cls, d: Any, where: str):
        """The record of the JSON object ``d`` (read from ``where``), or a G2GError naming the key."""
        if not isinstance(d, dict):
            raise G2GError(f"{where} is not a {cls.__name__} record (a JSON object)")
        hints = typing.get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in d and _has_default(f):
                continue
            values[f.name] = _convert(d.get(f.name), hints[f.name], f.name, where, f.name in cls._FINITE)
        return cls(**values)

    # -- Mapping -------------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self._items()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())


def _has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


_EXPECT = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "an object"}


def _convert(value: Any, hint: Any, key: str, where: str, finite: bool) -> Any:
    """``value`` as the field type ``hint`` (int -> float, list -> tuple, dict -> record)."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    for t in options:
        origin = typing.get_origin(t)
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if finite and not math.isfinite(value):
                break
            return float(value)
        if t in (int, str, bool) and isinstance(value, t) and (t is bool or not isinstance(value, bool)):
            return value
        if (t is dict or origin is dict) and isinstance(value, dict):
            if origin is None:  # a state dict: its contents are checked where it is loaded
                return value
            item = typing.get_args(t)[1]
            return {str(k): _convert(v, item, f"{key}.{k}", where, finite) for k, v in value.items()}
        if origin is tuple and isinstance(value, list):
            item = typing.get_args(t)[0]
            return tuple(_convert(v, item, f"{key}[{i}]", where, finite) for i, v in enumerate(value))
        if isinstance(t, type) and issubclass(t, Record) and isinstance(value, dict):
            return t.from_dict(value, f"{where}, {key}")
    expect = " or ".join("null" if t is type(None) else _EXPECT.get(t, getattr(t, "__name__", str(t)))
                         for t in options)
    raise G2GError(f"{where}: {key} is {value!r}, expected {'a finite number' if finite else expect}")


@dataclass(frozen=True)
class LayerUpdate(Record):
    """One sparse layer after a DST update (SPEC §3's topology statistics)."""

    density: float
    intra_fraction: float | None  # None: the layer has no ensembles (an ER mask)
    changed: int  # connections pruned (= regrown)
    ever_active: float  # share of all positions active at some update so far

    _KEEP_NONE = frozenset({"intra_fraction"})


@dataclass(frozen=True)
class DSTUpdate(Record):
    """One rewiring of every sparse layer, at optimizer step ``step``."""

    step: int
    fraction: float
    layers: dict[str, LayerUpdate]


@dataclass(frozen=True)
class EpochRecord(Record):
    """One line of metrics.jsonl: the epoch's training loss/accuracy, test (and validation) results."""

    epoch: int
    step: int
    lr: float
    train_loss: float
    train_acc: float
    epoch_time: float  # seconds of training, evaluation excluded
    test_loss: float
    test_acc: float
    val_loss: float | None = None
    val_acc: float | None = None
    dst: tuple[DSTUpdate, ...] = ()


@dataclass(frozen=True)
class Summary(Record):
    """summary.json: the final model's results and costs (written once, when a run finishes)."""

    test_acc: float
    active_params: int
    seconds_per_epoch: float
    density: float | None = None  # None: no sparse layer
    test_loss: float | None = None
    dataset: str | None = None
    model: str | None = None
    seed: int | None = None
    epochs: int | None = None
    dst: str | None = None  # PRUNE:GROW or static
    wall_time: float | None = None  # seconds of training over all starts and resumes
    steps: int | None = None
    processes: int | None = None
    total_params: int | None = None
    macs_per_sample: int | None = None
    flops_per_sample: int | None = None
    val_loss: float | None = None
    val_acc: float | None = None

    _KEEP_NONE = frozenset({"density"})
    _FINITE = frozenset({"test_acc", "active_params", "seconds_per_epoch"})


@dataclass(frozen=True)
class Checkpoint(Record):
    """checkpoint.pt: everything a resume needs, after ``epoch`` of ``epochs`` epochs."""

    model: dict
    optimizer: dict
    scheduler: dict
    epoch: int
    step: int
    wall_time: float
    epochs: int | None = None  # None in checkpoints written before it was recorded
    dst: dict | None = None  # the DynamicSparsity state of a DST run
