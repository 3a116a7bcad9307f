"""The one exception type for user mistakes (the CLI prints it as a single line, no traceback),
and the one lookup of a name in a registry (a plain dict) that lists the valid names on a miss."""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


class G2GError(ValueError):
    """A user-facing error (bad name, impossible size, corrupt data, foreign checkpoint).

    Subclasses ValueError so library users can catch it the usual way; the CLI turns it into
    ``g2g: error: <message>`` and exit status ``exit_code``.
    """

    exit_code = 2  # a subclass that is not a mistake (an interrupted run: 130) says so here


def lookup(registry: dict[str, T], name: Any, what: str) -> T:
    """``registry[name]``, or a G2GError ``unknown <what> 'x'; valid: a, b, c``."""
    if isinstance(name, str) and name in registry:
        return registry[name]
    raise G2GError(f"unknown {what} {name!r}; valid: {', '.join(registry)}")
