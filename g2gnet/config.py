"""The configuration of one run (SPEC §5, §8): nested dataclasses holding the defaults, types and
range checks of a run's settings. The CLI derives its options from these fields; ``build_model``
takes a ``ModelConfig`` and ``DynamicSparsity`` a ``DSTConfig`` (loose keyword options go through
the same fields), and the library's other signatures that share a setting take their default
from here (``modular_mask``'s ``p_inter`` is ``ModelConfig.p_inter``); ``config.json`` round-trips.

Plain data, no torch. Adding a knob is one field: ``knob(default, help, check=..., expect=...)``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import G2GError


def knob(default: Any, help: str, *, check: Callable[[Any], bool] | None = None, expect: str = "",
         flag: str | None = None, metavar: str | None = None) -> Any:
    """A config field: its default, its ``--help`` text, and the one check of its range.

    ``check(value)`` returns False for a bad value; the error says ``<name> must be <expect>``.
    ``flag`` overrides the derived CLI option name (``--<section prefix><name>``).
    """
    return field(default=default, metadata={"help": help, "check": check, "expect": expect, "flag": flag,
                                            "metavar": metavar})


def same_knob(section: type, name: str, **changes: Any) -> Any:
    """The knob ``name`` of another section again (its default, help and check), with ``changes``
    to its metadata: a setting that two commands take is written once (``g2g bench --device`` is
    ``g2g train``'s)."""
    f = {f.name: f for f in dataclasses.fields(section)}[name]
    meta = {**f.metadata, **changes}
    return knob(f.default, meta["help"], check=meta["check"], expect=meta["expect"], flag=meta["flag"],
                metavar=meta["metavar"])


def at_least(low: float) -> dict:
    """The range check of a knob that must be ``>= low`` (``knob(..., **at_least(1))``)."""
    return {"check": lambda v: v >= low, "expect": f">= {low}"}


def each_at_least(low: float, what: str) -> dict:
    """The range check of a list knob: at least one value, each ``>= low``."""
    return {"check": lambda v: len(v) > 0 and min(v) >= low, "expect": f"{what} >= {low}"}


def _probability(v) -> bool:
    return 0.0 <= v <= 1.0


def _one_of(*choices: str) -> dict:
    return {"check": lambda v: v in choices, "expect": f"one of {', '.join(choices)}"}


def _window(v) -> bool:
    return v == "all" or (isinstance(v, int) and v >= 1)


_S = TypeVar("_S", bound="_Section")


class _Section:
    """Checks types and ranges of every field at construction (also after ``replace``)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, self.checked(f.name, getattr(self, f.name)))
        self.validate()

    @classmethod
    def checked(cls, name: str, value: Any, label: str | None = None) -> Any:
        """``value`` as field ``name`` holds it (coerced to its type, in its range), or a G2GError
        naming it ``label`` (default: ``name``): also for functions that take the setting loose
        (``modular_mask``'s ``p_inter``), or a value of the same kind (an ER mask's density)."""
        f = next(f for f in dataclasses.fields(cls) if f.name == name)
        label = label or name
        value = coerce(value, typing.get_type_hints(cls)[name], label)
        check = f.metadata.get("check")
        if value is not None and check is not None and not check(value):
            raise G2GError(f"{label} must be {f.metadata['expect']}, got {value!r}")
        return value

    def validate(self) -> None:
        """Checks that involve several fields."""

    def replace(self: _S, **changes: Any) -> _S:
        """A copy with ``changes`` applied and checked; an unknown key is a G2GError listing the
        valid ones."""
        _check_known(type(self), changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self)}


def coerce(value: Any, hint: Any, name: str) -> Any:
    """``value`` as the annotated type (int -> float, list -> tuple), or a G2GError."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise G2GError(f"{name} must not be None")
    for t in options:
        if t is bool and isinstance(value, bool):
            return value
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise G2GError(f"{name} must be a finite number, got {value!r}")
            return float(value)
        if t is str and isinstance(value, str):
            return value
        if typing.get_origin(t) is tuple and isinstance(value, (list, tuple)):
            item = typing.get_args(t)[0]
            if all(isinstance(v, item) and not isinstance(v, bool) for v in value):
                return tuple(value)
    names = " or ".join("None" if t is type(None) else _type_name(t) for t in options)
    raise G2GError(f"{name} must be {names}, got {value!r} ({type(value).__name__})")


def _type_name(t: Any) -> str:
    if typing.get_origin(t) is tuple:
        return {int: "a list of integers", str: "a list of strings"}[typing.get_args(t)[0]]
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(t, str(t))


@dataclass(frozen=True)
class DataConfig(_Section):
    dataset: str = knob("fashion-mnist", "fashion-mnist | mnist | cifar10 | cifar100")
    val: int = knob(0, "hold out this many training images for validation (model selection)", **at_least(0))
    labels: str = knob("fine", "cifar100 label set: fine | coarse")
    augment: bool | None = knob(None, "random crop + flip (default: on for CIFAR)")


@dataclass(frozen=True)
class ModelConfig(_Section):
    name: str = knob("g2g-mixer", "dense | dense-matched | er | g2g-index | g2g-random | g2g-mixer "
                     "(g2g list shows all)", flag="--model")
    hidden: tuple[int, ...] = knob((1024, 1024, 1024), "hidden widths, e.g. 1024,1024,1024",
                                   **each_at_least(1, "widths"))
    groups: int = knob(8, "ensembles per layer side (G)", **at_least(1))
    p_intra: float = knob(1.0, "connection probability inside an ensemble", check=_probability,
                          expect="a probability in [0, 1]")
    p_inter: float = knob(0.15, "connection probability between ensembles (p')", check=_probability,
                          expect="a probability in [0, 1]")
    frontend: str = knob("none", "none | patch (CIFAR: conv 8x8/8, 32 channels)")
    inter_tile: int = knob(1, "sample inter-group links in T x T tiles (1 = element-wise)", **at_least(1))
    dropout: float = knob(0.0, "dropout after every hidden non-linearity", check=lambda v: 0.0 <= v < 1.0,
                          expect="in [0, 1)")


# The largest seed: torch's CPU generator keeps only a seed's low 32 bits, so seeds beyond would
# draw the masks and initial weights of a smaller one (and seeds of 1.8e13 and more overflow the
# data order's ``seed * 1_000_003 + epoch``).
SEED_MAX = 2**32 - 1


@dataclass(frozen=True)
class TrainConfig(_Section):
    epochs: int | None = knob(None, "default: 20 (F-MNIST, MNIST), 30 (CIFAR-10), 40 (CIFAR-100)",
                              **at_least(1))
    batch_size: int = knob(256, "global batch size", **at_least(1))
    lr: float = knob(1e-3, "Adam learning rate (cosine schedule to 0)", check=lambda v: v > 0, expect="> 0")
    weight_decay: float = knob(1e-4, "Adam L2 weight decay", **at_least(0))
    seed: int = knob(0, "seeds masks, init, data order, augmentation, dropout and DST (0 to 2^32 - 1)",
                     check=lambda v: 0 <= v <= SEED_MAX, expect=f"in [0, {SEED_MAX}] (2^32 - 1)")
    device: str = knob("cpu", "cpu | cuda | cuda:N")
    threads: int | None = knob(None, "CPU threads (default: torch's)", **at_least(1))


# The rule ``DynamicSparsity`` applies when its caller names none: the paper's (prune by magnitude,
# grow by the Hebbian score). A run's ``DSTConfig`` names none unless asked: a static mask.
PAPER_RULE = ("magnitude", "hebbian")


@dataclass(frozen=True)
class DSTConfig(_Section):
    prune: str | None = knob(None, "prune criterion (g2g list); none = static mask")
    grow: str | None = knob(None, "grow criterion (g2g list)")
    interval: int = knob(1000, "optimizer steps between updates", **at_least(1))
    fraction: float = knob(0.1, "fraction of active links rewired per update (zeta)", check=_probability,
                           expect="in [0, 1]")
    decay: str = knob("constant", "constant | cosine", **_one_of("constant", "cosine"))
    stop: float = knob(1.0, "no updates after this fraction of training", check=lambda v: 0.0 < v <= 1.0,
                       expect="in (0, 1]")
    window: int | str = knob(1, "batches of activity/gradient per update: N or all", check=_window,
                             expect="a positive integer or 'all'")
    score: str = knob("cosine", "Hebbian score: cosine | pearson", **_one_of("cosine", "pearson"))

    def validate(self) -> None:
        if (self.prune is None) != (self.grow is None):
            raise G2GError("DST needs both a prune and a grow criterion (e.g. --dst magnitude:hebbian)")

    @classmethod
    def rule(cls, **settings: Any) -> DSTConfig:
        """The section ``DynamicSparsity(model, optimizer, **settings)`` describes: ``settings`` over
        the defaults, the paper's rule (``PAPER_RULE``) for a prune or grow criterion not named."""
        prune, grow = PAPER_RULE
        return make(cls, **{"prune": prune, "grow": grow, **settings})

    @property
    def enabled(self) -> bool:
        return self.prune is not None

    @property
    def label(self) -> str:
        """``PRUNE:GROW`` or ``static``: how tables and run names show it."""
        return f"{self.prune}:{self.grow}" if self.enabled else "static"


SECTIONS: dict[str, type[_Section]] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig,
                                       "dst": DSTConfig}
# Keys that say where and how fast a run ran, not what it is: runs differing only in these (and
# the seed) are repeats of one configuration.
NOT_IDENTITY = {("train", "seed"), ("train", "device"), ("train", "threads")}


@dataclass(frozen=True)
class Config:
    """Everything that defines a run; ``config.json`` holds ``to_dict()`` of the resolved one."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dst: DSTConfig = field(default_factory=DSTConfig)

    def to_dict(self) -> dict:
        return {name: getattr(self, name).to_dict() for name in SECTIONS}

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        """The inverse of ``to_dict``; also reads the flat ``config.json`` of g2gnet 0.1 runs."""
        if not isinstance(d, dict):
            raise G2GError(f"a config must be a JSON object, got {type(d).__name__}")
        if _is_flat(d):  # the flat layout of g2gnet 0.1
            d = _from_flat(d)
        unknown = set(d) - set(SECTIONS)
        if unknown:
            raise G2GError(f"unknown config section(s) {sorted(unknown)}; valid: {', '.join(SECTIONS)}")
        for name, section in d.items():
            if not isinstance(section, dict):
                raise G2GError(f"config section {name!r} must be a JSON object, got {type(section).__name__}")
        return cls(**{name: make(section, **d.get(name, {})) for name, section in SECTIONS.items()})

    def replace(self, **changes: dict) -> Config:
        """A copy with ``section={field: value}`` changes applied (and checked)."""
        return dataclasses.replace(self, **{s: getattr(self, s).replace(**kv) for s, kv in changes.items()})

    def resolve(self, default_epochs: int, default_augment: bool) -> Config:
        """Fill the dataset-dependent defaults (``None`` epochs and augment)."""
        return self.replace(
            train={"epochs": self.train.epochs if self.train.epochs is not None else default_epochs},
            data={"augment": self.data.augment if self.data.augment is not None else default_augment})

    def flat(self) -> dict:
        """One level of short keys (``model``, ``p_inter``, ``dst``, ``dst_interval``, ...), the layout
        of g2gnet 0.1's config.json (reports name keys ``section.field`` and take these as aliases,
        report/keys.py); ``dst`` is ``PRUNE:GROW`` or ``static``."""
        d = {key: getattr(getattr(self, s), name) for key, (s, name) in _FLAT.items()
             if key not in ("dst_prune", "dst_grow")}
        d["dst"] = self.dst.label
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def identity(self) -> dict:
        """``flat()`` without seed, device and threads: equal for repeats of one experiment."""
        return {k: v for k, v in self.flat().items() if _FLAT.get(k) not in NOT_IDENTITY}


def make(section: type[_Section], **values: Any) -> _Section:
    """``section(**values)`` with unknown keys as a G2GError listing the valid ones."""
    _check_known(section, values)
    return section(**values)


def _check_known(section: type[_Section], values: dict) -> None:
    valid = [f.name for f in dataclasses.fields(section)]
    unknown = sorted(set(values) - set(valid))
    if unknown:
        what = section.__name__.removesuffix("Config").lower()
        raise G2GError(f"unknown {what} option(s) {', '.join(unknown)}; valid: {', '.join(valid)}")


def _flat_key(section: str, name: str) -> str:
    return "model" if (section, name) == ("model", "name") else f"dst_{name}" if section == "dst" else name


# The short keys of ``Config.flat()`` (also the layout of g2gnet 0.1's config.json) -> field.
_FLAT = {_flat_key(s, f.name): (s, f.name) for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
assert len(_FLAT) == sum(len(dataclasses.fields(c)) for c in SECTIONS.values()), "flat config keys collide"


def _is_flat(d: dict) -> bool:
    """The flat layout has no object values and none of the section names that are not also flat
    keys (``model`` and ``dst`` are both): ``{"model": [1], "train": {...}}`` is a broken nested
    config, to be reported as such, not a flat one."""
    flat_keys = set(_FLAT) | {"dst"}  # "dst" is PRUNE:GROW there
    return not any(isinstance(v, dict) for v in d.values()) and not (set(d) & (set(SECTIONS) - flat_keys))


def _from_flat(flat: dict) -> dict:
    nested: dict[str, dict] = {s: {} for s in SECTIONS}
    for key, value in flat.items():
        if key == "dst":
            prune, grow = parse_dst(value)
            nested["dst"].update(prune=prune, grow=grow)
        elif key in _FLAT:
            section, name = _FLAT[key]
            nested[section][name] = value
        else:
            raise G2GError(f"unknown config key {key!r}")
    window = nested["dst"].get("window")
    if isinstance(window, str) and window.isdigit():
        nested["dst"]["window"] = int(window)
    return nested


def parse_dst(text: str | None) -> tuple[str | None, str | None]:
    """``"PRUNE:GROW"`` (the CLI's shorthand) -> (prune, grow); None or "static" -> (None, None)."""
    if text is None or text == "static":
        return None, None
    prune, sep, grow = str(text).partition(":")
    if not sep or not prune or not grow:
        raise G2GError(f"--dst must be PRUNE:GROW (e.g. magnitude:hebbian) or static, got {text!r}")
    return prune, grow
