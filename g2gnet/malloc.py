"""Keep freed heap memory from staying resident (glibc).

glibc serves allocations below its mmap threshold from the heap and keeps their pages after
``free``; the threshold starts at 128 KiB and rises at run time up to 32 MiB, so the 4-17 MiB
buffers of a training step end up in the heap, and the resident memory grows over the first
steps beyond what is live (training a 784-4096³-10 g2g-mixer: 0.39-0.40 of dense's peak, with
0.30 live). Two tools:

- ``limit_retention()``: sets glibc's mmap threshold to 4 MiB (``mallopt(M_MMAP_THRESHOLD)``), so
  larger blocks are mapped and returned at ``free``. It is a process-wide allocator setting:
  g2gnet applies it once, when the first sparse layer is built, unless the user set
  ``MALLOC_MMAP_THRESHOLD_`` (theirs wins) or ``G2G_MALLOC=0``. Measured on the 2-core Zen 3
  machine: peak 0.34 of dense (241 / 706 MiB) instead of 0.39, and the G2G layer's training step
  no slower (2048 wide, fwd+bwd 25-26 ms against 29-33 ms without; dense unchanged).
- ``trim()``: ``malloc_trim(0)`` returns every free page now; called where g2gnet itself freed many
  temporaries (after building a model, after a DST update).

Both are no-ops where glibc is not the allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

MMAP_THRESHOLD = 4 << 20  # bytes: blocks from this size on are mapped, and unmapped at free
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number

try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _trim, _mallopt = _libc.malloc_trim, _libc.mallopt
    _trim.argtypes = [ctypes.c_size_t]
    _mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
except (OSError, AttributeError):  # not glibc
    _trim = _mallopt = None

_limited = False


def limit_retention() -> None:
    """Set glibc's mmap threshold to ``MMAP_THRESHOLD`` once per process (see the module doc)."""
    global _limited
    if _limited:
        return
    _limited = True
    if _mallopt is None or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    if os.environ.get("G2G_MALLOC", "").lower() in ("0", "off", "false"):
        return
    _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def trim() -> None:
    if _trim is not None:
        _trim(0)
