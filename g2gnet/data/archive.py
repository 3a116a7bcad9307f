"""Safe extraction of the official CIFAR tarballs.

Only the expected members are extracted, each copied through ``extractfile`` (never
``TarFile.extract``), so links, devices and permissions in the archive are ignored; a member whose
path is absolute or climbs out with ``..`` makes the whole archive rejected. Files are written to
temporary names and renamed only once every expected member has been read, so an interrupted or
failed extraction never leaves a directory that looks complete.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterable
from pathlib import Path

from g2gnet.errors import G2GError


def _is_safe(name: str) -> bool:
    parts = posixpath.normpath(name).split("/")
    return not name.startswith("/") and ".." not in parts and not (parts and parts[0].endswith(":"))


def extract_members(tarball: Path, folder: str, names: Iterable[str], dest_root: Path) -> Path:
    """Extract ``<folder>/<name>`` for every name into ``dest_root/<folder>``; return that folder.

    Raises ``G2GError`` naming the archive when it is unreadable, holds an unsafe path, or lacks a
    member.
    """
    wanted = {f"{folder}/{n}": n for n in names}
    out_dir = Path(dest_root) / folder
    written: dict[str, str] = {}  # final name -> temporary path
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball, "r:*") as tar:
            for member in tar:  # streaming: one pass over the gzip stream
                if not _is_safe(member.name):
                    raise G2GError(f"{tarball}: unsafe path {member.name!r} in archive, refusing to extract")
                key = posixpath.normpath(member.name)
                if key not in wanted:
                    continue
                if not member.isfile():
                    raise G2GError(f"{tarball}: {member.name!r} is not a regular file")
                src = tar.extractfile(member)
                assert src is not None  # isfile() members always have data
                fd, tmp = tempfile.mkstemp(prefix=f".{wanted[key]}.", suffix=".part", dir=out_dir)
                written[wanted[key]] = tmp
                with os.fdopen(fd, "wb") as dst, src:
                    shutil.copyfileobj(src, dst)
        missing = sorted(set(wanted.values()) - set(written))
        if missing:
            raise G2GError(f"{tarball} lacks {', '.join(f'{folder}/{m}' for m in missing)}")
        for name, tmp in written.items():
            os.replace(tmp, out_dir / name)
        written.clear()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise G2GError(f"cannot extract {tarball} into {dest_root}: {e}") from None
    finally:
        for tmp in written.values():
            Path(tmp).unlink(missing_ok=True)
    return out_dir
