"""The environment switches of g2gnet (``G2G_FAST``, ``G2G_NO_NATIVE``, ``G2G_MALLOC``,
``G2G_HUGEPAGES``), read one way: case-insensitive, ``0`` / ``off`` / ``false`` say no, any other
non-empty value says yes, unset (or empty) is the switch's default."""

from __future__ import annotations

import os

_NO = ("0", "off", "false")


def switch(name: str, default: bool) -> bool:
    """Whether the environment variable ``name`` is on (``default`` when it is unset or empty)."""
    value = os.environ.get(name, "").strip().lower()
    return default if not value else value not in _NO
