"""The user cache directory of g2gnet (downloaded datasets, compiled kernels), in one place:
``$G2G_CACHE``, else ``$XDG_CACHE_HOME/g2gnet``, else ``~/.cache/g2gnet``."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "G2G_CACHE"


def user_cache() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "g2gnet"
