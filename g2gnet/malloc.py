"""Keep freed heap memory from staying resident (glibc).

glibc serves allocations below its mmap threshold from the heap and keeps their pages after
``free``; the threshold starts at 128 KiB and rises at run time up to 32 MiB, so the 4-17 MiB
buffers of a training step end up in the heap, and the resident memory grows over the first
steps beyond what is live (training a 784-4096³-10 g2g-mixer: 0.39-0.40 of dense's peak, with
0.30 live). Three tools:

- ``limit_retention()``: sets glibc's mmap threshold to 4 MiB (``mallopt(M_MMAP_THRESHOLD)``), so
  larger blocks are mapped and returned at ``free``. It is a process-wide allocator setting:
  g2gnet applies it once, when the first sparse layer is built, unless the user set
  ``MALLOC_MMAP_THRESHOLD_`` (theirs wins) or ``G2G_MALLOC=0``. Measured on the 2-core Zen 3
  machine: peak 0.34 of dense (241 / 706 MiB) instead of 0.39, and the G2G layer's training step
  no slower (2048 wide, fwd+bwd 25-26 ms against 29-33 ms without; dense unchanged).
- ``trim()``: ``malloc_trim(0)`` returns every free page now; called where g2gnet itself freed many
  temporaries (after building a model, after a DST update).
- ``huge(t)``: asks for 2 MiB pages on a fresh buffer of 4 MiB or more (the native ops' outputs:
  gathered activations, gradients), which the threshold maps afresh at every step. One 4096-wide
  layer, forward + backward at batch 256 (``benchmarks/hugepages.py``): 7,134 page faults a step
  without, 2,229 with, the step 2-4% faster (noisy); perf-memory's peak unchanged (0.31 / 0.30).
  ``G2G_HUGEPAGES=0`` (read at import) turns it off.

All three are no-ops where glibc is not the allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import TYPE_CHECKING

from .env import switch

if TYPE_CHECKING:
    from torch import Tensor

MMAP_THRESHOLD = 4 << 20  # bytes: blocks from this size on are mapped, and unmapped at free
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
_MADV_HUGEPAGE = 14  # Linux's madvise advice number

try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _trim, _mallopt, _madvise = _libc.malloc_trim, _libc.mallopt, _libc.madvise
    _trim.argtypes = [ctypes.c_size_t]
    _mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    _madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
except (OSError, AttributeError):  # not glibc
    _trim = _mallopt = _madvise = None

_limited = False


def limit_retention() -> None:
    """Set glibc's mmap threshold to ``MMAP_THRESHOLD`` once per process (see the module doc)."""
    global _limited
    if _limited:
        return
    _limited = True
    if _mallopt is None or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    if not switch("G2G_MALLOC", True):
        return
    _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def trim() -> None:
    if _trim is not None:
        _trim(0)


# Huge pages for the large buffers of a training step. With the 4 MiB threshold above, a step's
# 4-9 MiB outputs (gathered activations, gradients) are mapped afresh at every step and every 4 KiB
# page of them is a page fault at first touch; asking the kernel for 2 MiB pages on them (before
# anything touches them) turns ~1000 faults per buffer into a few.
HUGE_MIN_BYTES = MMAP_THRESHOLD  # the buffers that are mapped afresh
_HUGE = 2 << 20  # bytes of one huge page
_HUGE_ENV = switch("G2G_HUGEPAGES", True)


def huge(t: Tensor) -> Tensor:
    """``t`` (a fresh, untouched CPU tensor), with MADV_HUGEPAGE on its whole 2 MiB pages; returns it."""
    if _madvise is None or not _HUGE_ENV:
        return t
    nbytes = t.numel() * t.element_size()
    if nbytes < HUGE_MIN_BYTES:
        return t
    start = t.data_ptr()
    lo = (start + _HUGE - 1) // _HUGE * _HUGE
    hi = (start + nbytes) // _HUGE * _HUGE
    if hi > lo:
        _madvise(lo, hi - lo, _MADV_HUGEPAGE)
    return t
