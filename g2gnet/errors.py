"""The one exception type for user mistakes (the CLI prints it as a single line, no traceback),
and the one lookup of a name in a registry (a plain dict) that lists the valid names on a miss."""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


class G2GError(ValueError):
    """A user-facing error (bad name, impossible size, corrupt data, foreign checkpoint).

    Subclasses ValueError so library users can catch it the usual way; the CLI turns it into
    ``g2g: error: <message>`` and exit status 2.
    """


def lookup(registry: dict[str, T], name: Any, what: str) -> T:
    """``registry[name]``, or a G2GError ``unknown <what> 'x'; valid: a, b, c``."""
    if isinstance(name, str) and name in registry:
        return registry[name]
    raise G2GError(f"unknown {what} {name!r}; valid: {', '.join(registry)}")
