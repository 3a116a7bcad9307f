"""The report's key vocabulary: every configuration field as ``section.field`` (``model.name``,
``model.p_inter``, ``dst.prune``, ``train.epochs``), the one form that ``--by``, ``--baseline``, a
suite's ``[report]`` table and the table columns use.

The short keys of g2gnet 0.1's config.json and of the first suites (``model=dense``, ``p_inter``,
``dst=static``, ``dst_interval``) are aliases: they are mapped to dotted keys here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import json

from ..config import NOT_IDENTITY, SECTIONS, Config, parse_dst
from ..errors import G2GError, lookup

Identity = dict[str, object]


def identity(config: Config) -> Identity:
    """Dotted key -> value of everything that defines a run but its seed, device and threads:
    equal for the repeats of one configuration (lists for tuples, as in config.json)."""
    return {f"{s}.{k}": v for s, fields in config.to_dict().items() for k, v in fields.items()
            if (s, k) not in NOT_IDENTITY}


def identity_key(ident: Identity) -> str:
    """A hashable, order-free form of an identity (for grouping and matching)."""
    return json.dumps(ident, sort_keys=True)


def _short(section: str, name: str) -> str:
    # The flat layout of g2gnet 0.1 (``Config.flat``): field names, but ``model`` for the model's
    # name and a ``dst_`` prefix for the DST section.
    return "model" if (section, name) == ("model", "name") else f"dst_{name}" if section == "dst" else name


ALIASES: dict[str, str] = {_short(s, f.name): f"{s}.{f.name}" for s, cls in SECTIONS.items()
                           for f in dataclasses.fields(cls)}
# ``dst`` names two fields at once: ``PRUNE:GROW`` or ``static``.
DST_RULE = ("dst.prune", "dst.grow")


def resolve(key: str, valid: list[str], what: str) -> list[str]:
    """The dotted key(s) a user's key names (itself, or its alias's), checked against ``valid``."""
    if key == "dst":
        names = list(DST_RULE)
    else:
        names = [ALIASES.get(key, key)]
    for name in names:
        if name not in valid:
            lookup({k: k for k in valid}, key, what)  # raises "unknown <what> 'key'; valid: ..."
    return names


def parse_by(text: str | None) -> list[str] | None:
    """``--by a,b`` -> ["a", "b"] (None when empty)."""
    keys = [k.strip() for k in (text or "").split(",") if k.strip()]
    return keys or None


def show(value) -> str:
    """A value as tables print it and ``--baseline`` matches it: lists comma-joined, numbers in %g,
    None as ``none`` (a DST criterion that is off), booleans as in TOML."""
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _number(text: str):
    try:
        return float(text) if any(c in text for c in ".e") else int(text)
    except ValueError:
        return text


def parse_baseline(text: str, valid: list[str]) -> dict[str, str]:
    """``KEY=VALUE[,KEY=VALUE...]`` -> {dotted key: value as tables print it}; ``dst=PRUNE:GROW``
    and ``dst=static`` set both DST criteria."""
    items: list[str] = []
    for piece in text.split(","):  # a bare number continues a list value (model.hidden=64,64)
        if not (items and piece.strip().isdigit()):
            items.append(piece)
        else:
            items[-1] += "," + piece
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key or not value:
            raise G2GError(f"--baseline must be KEY=VALUE[,KEY=VALUE] (e.g. model.name=dense), got {text!r}")
        names = resolve(key, valid, "--baseline key")
        values = parse_dst(value) if key == "dst" else (_number(value),)
        out.update({n: show(v) for n, v in zip(names, values)})
    return out


def baseline_text(want: dict[str, str]) -> str:
    """The canonical spelling of a parsed baseline (dotted keys), as the tables name it."""
    return ",".join(f"{k}={v}" for k, v in want.items())
