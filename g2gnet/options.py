"""Command-line options derived from knobs (``config.knob``): one option per field of a section
(name, type, help and default from the field), so a new field is a new option. ``g2g train``'s
come from ``g2gnet.config`` (shared with ``g2g sweep``, which parses every cell of a grid with the
same options), ``g2g bench``'s from ``bench_config.BenchConfig``.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing

from .config import SECTIONS, Config, parse_dst
from .errors import G2GError


class ArgParser(argparse.ArgumentParser):
    """A parser whose mistakes are a one-line ``G2GError`` (the CLI prints it, exit status 2)."""

    def error(self, message: str):
        raise G2GError(f"{message} (see '{self.prog} --help')")


def int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


# CLI option prefix of each config section's fields (``--dst-interval``, ``--p-inter``).
_PREFIX = {"data": "", "model": "", "train": "", "dst": "dst-"}
_TITLES = {"data": "data", "model": "model options", "train": "training", "dst": "dynamic sparse training"}


def word_list(text: str) -> tuple[str, ...]:
    """Comma-separated words; ``none`` is the empty list."""
    words = tuple(w.strip() for w in text.split(",") if w.strip())
    return () if words == ("none",) else words


def _int_or_word(text: str) -> int | str:
    return int(text) if text.strip().lstrip("-").isdigit() else text


def _optional_word(text: str) -> str | None:
    return None if text.lower() in ("none", "static") else text


def _argument(hint) -> dict:
    """argparse keywords for a field of type ``hint``."""
    options = set(typing.get_args(hint)) if isinstance(hint, types.UnionType) else {hint}
    options.discard(type(None))
    if options == {bool}:
        return {"action": argparse.BooleanOptionalAction}
    if options == {int}:
        return {"type": int, "metavar": "N"}
    if options == {float}:
        return {"type": float, "metavar": "X"}
    if options == {int, str}:
        return {"type": _int_or_word}
    if options == {str}:
        nullable = isinstance(hint, types.UnionType)
        return {"type": _optional_word if nullable else str}
    if options == {tuple[int, ...]}:
        return {"type": int_list, "metavar": "N,N,..."}
    if options == {tuple[str, ...]}:
        return {"type": word_list, "metavar": "A,B,..."}
    raise TypeError(f"no CLI type for {hint}")  # pragma: no cover (a new kind of field)


def _flag(f: dataclasses.Field, prefix: str) -> str:
    return f.metadata.get("flag") or "--" + prefix + f.name.replace("_", "-")


def option_name(section: str, name: str) -> str:
    """The CLI option of config field ``section.name`` (e.g. ``--p-inter``, ``--dst-interval``)."""
    f = next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == name)
    return _flag(f, _PREFIX[section])


def add_knob_options(group, cls: type, prefix: str = "", dest_prefix: str = "",
                     extra: dict[str, dict] | None = None) -> None:
    """One option per knob of ``cls`` (``--<prefix><name>`` or the knob's ``flag``), its help text
    ending with the knob's default. Options default to 'not given' (``argparse.SUPPRESS``), so the
    dataclass supplies every default and ``--config`` + flags works. ``extra``: argparse keywords
    of a field's option beyond those derived from its type (e.g. ``nargs``)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        default = f.default
        shown = (",".join(map(str, default)) or "none") if isinstance(default, tuple) else default
        help_text = f.metadata["help"] + ("" if default is None else f" (default: {shown})")
        kw = {**_argument(hints[f.name]), **(extra or {}).get(f.name, {})}
        if kw.get("action") is not argparse.BooleanOptionalAction:  # a flag takes no value
            kw["metavar"] = f.metadata.get("metavar") or kw.get("metavar") or f.name.upper()
        group.add_argument(_flag(f, prefix), dest=dest_prefix + f.name, default=argparse.SUPPRESS,
                           help=help_text, **kw)


def knob_values(args: argparse.Namespace, cls: type) -> dict:
    """The options of ``add_knob_options(..., cls)`` that were given, by field name."""
    given = vars(args)
    return {f.name: given[f.name] for f in dataclasses.fields(cls) if f.name in given}


def add_config_options(p: argparse.ArgumentParser) -> None:
    """One option per config field, defaulting to 'not given' so that ``--config`` + flags works."""
    for section, cls in SECTIONS.items():
        group = p.add_argument_group(_TITLES[section])
        add_knob_options(group, cls, _PREFIX[section], f"{section}.")
        if section == "dst":
            group.add_argument("--dst", dest="dst_pair", metavar="PRUNE:GROW", default=argparse.SUPPRESS,
                               help="shorthand for --dst-prune PRUNE --dst-grow GROW, e.g. magnitude:hebbian; "
                                    "'static' for none")


def config_from_args(args: argparse.Namespace) -> Config:
    """``--config`` (or the defaults) with every given option applied and checked.

    ``--dataset`` changing the dataset of ``--config``: an option whose default depends on the
    dataset (``--epochs``, ``--augment``) keeps a loaded value that is not the old dataset's default
    (a choice). A loaded value equal to the old default may be a default or a choice
    (config.json holds resolved values): where the new dataset's default differs, it must be given
    as a flag (a one-line error says so), since neither keeping nor replacing it is right every time."""
    base = Config()
    given = vars(args)
    if getattr(args, "config", None):
        from .runs import read_config

        base = read_config(args.config)
        if "data.dataset" in given and given["data.dataset"] != base.data.dataset:
            _check_dataset_change(args.config, base, given)
    changes: dict[str, dict] = {}
    if "dst_pair" in given:
        prune, grow = parse_dst(given["dst_pair"])
        changes["dst"] = {"prune": prune, "grow": grow}
    for key, value in given.items():
        if "." in key:
            section, name = key.split(".", 1)
            changes.setdefault(section, {})[name] = value
    return base.replace(**changes)




# The options whose default is the dataset's (``Config.resolve``): (section, field, how to give it).
_DATASET_DEFAULTS = (("train", "epochs", "--epochs N"), ("data", "augment", "--augment or --no-augment"))


def _check_dataset_change(path, base: Config, given: dict) -> None:
    """A G2GError naming the dataset-dependent options that ``--dataset`` leaves ambiguous (see
    ``config_from_args``)."""
    from .data.datasets import DATASETS, dataset_info

    old, new = base.data.dataset, given["data.dataset"]
    new_info, old_info = dataset_info(new), DATASETS.get(old)  # an unknown new name lists the valid ones
    missing = []
    for section, name, flag in _DATASET_DEFAULTS:
        value = getattr(getattr(base, section), name)
        if f"{section}.{name}" in given or value is None:  # given, or not resolved: the new dataset's
            continue
        maybe_default = old_info is None or getattr(old_info, name) == value
        if maybe_default and getattr(new_info, name) != value:
            missing.append((name, value, flag, getattr(new_info, name)))
    if missing:
        held = " and ".join(f"{name} {str(value).lower()}" for name, value, _, _ in missing)
        flags = " and ".join(flag for _, _, flag, _ in missing)
        defaults = ", ".join(f"{name} {str(default).lower()}" for name, _, _, default in missing)
        raise G2GError(f"--dataset {new} changes the dataset of {path} ({old}), whose {held} may be {old}'s "
                       f"default{'s' if len(missing) > 1 else ''}, not a choice: give {flags} ({new}'s "
                       f"default{'s' if len(missing) > 1 else ''}: {defaults})")
