"""Fetch one file over HTTP(S) with urllib, verify its md5, and only then put it in place.

The body is streamed to a temporary file in the destination directory (same file system, so the
final ``os.replace`` is atomic) and hashed on the way; on a checksum mismatch or any failure the
temporary file is removed, so a bad download is never left where a later run would trust it.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from g2gnet.data.checksums import verify_md5
from g2gnet.errors import G2GError

_CHUNK = 1 << 20


class DownloadError(G2GError):
    """The network side failed (unreachable host, HTTP error, cut connection).

    Kept distinct from a checksum mismatch so ``sources`` can add where it looked and what to do.
    """


def download(url: str, dest: Path, expected_md5: str, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` if and only if its md5 equals ``expected_md5``."""
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as e:
        raise G2GError(f"cannot write to {dest.parent}: {e.strerror or e}") from None
    print(f"g2gnet: downloading {url} -> {dest}", file=sys.stderr)
    try:
        h = hashlib.md5(usedforsecurity=False)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                while chunk := resp.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
        except urllib.error.HTTPError as e:
            raise DownloadError(f"could not download {url} (HTTP {e.code} {e.reason})") from None
        except urllib.error.URLError as e:
            raise DownloadError(f"could not download {url} ({e.reason})") from None
        except (http.client.HTTPException, OSError) as e:  # timeouts, resets, disk full
            raise DownloadError(f"could not download {url} ({type(e).__name__}: {e})") from None
        verify_md5(h.hexdigest(), expected_md5, f"{dest.name} downloaded from {url}")
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)  # no-op after a successful rename
    return dest
