"""md5 checksums of dataset files, and the one error message for a mismatch (SPEC §4)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from g2gnet.errors import G2GError

_CHUNK = 1 << 20


def md5_bytes(data: bytes) -> str:
    """Hex md5 of an in-memory buffer (IDX files are checked after decompression)."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_file(path: Path) -> str:
    """Hex md5 of a file, read in chunks so a 160 MB tarball never sits in memory twice."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_md5(actual: str, expected: str, what: str | Path) -> None:
    """Raise a ``G2GError`` naming the file and both checksums when they differ."""
    if actual != expected:
        raise G2GError(
            f"{what}: md5 mismatch (expected {expected}, got {actual}); "
            "the file is corrupted, truncated or not the official one"
        )
