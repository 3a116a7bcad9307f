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
  machine: peak 0.34 of dense (241 / 706 MiB) instead of 0.39.
  A fixed mmap threshold also fixes glibc's trim threshold (the free memory at the top of the heap
  that is given back at ``free``) at its initial 128 KiB, so that every step's freed 1-4 MiB
  buffers went back to the kernel and were faulted in again at the next step (2048 wide, tiles 32,
  forward + backward: ~1,250 page faults a step, 16.7 ms); it is set to 32 MiB
  (``M_TRIM_THRESHOLD``; ``MALLOC_TRIM_THRESHOLD_`` set by the user wins): ~100 faults, 13.5-14 ms,
  as fast as without the setting up to 2048 wide (``python benchmarks/fair_baseline.py g2g
  g2g-plain``: 0.96-1.02), perf-memory's peak unchanged (0.34). At 4096 the step's 4-9 MiB buffers
  are mapped afresh and the kernel zeroes their pages at every step: a layer's forward + backward
  82 ms without the setting, 94 ms with it (the memory result's price).
  Process-wide means it reaches dense layers too: a dense layer's weight gradient of 4 MiB or more
  is then mapped afresh and faulted in at every step (2048 wide: 4,097 faults a step, training
  ~10% slower than in a process without g2gnet: ``python benchmarks/fair_baseline.py dense-plain
  dense-in-g2g``). Benchmarks therefore call ``keep_defaults()`` first: ``g2g bench`` times dense
  as plain PyTorch runs it.
- ``trim()``: ``malloc_trim(0)`` returns every free page now; called where g2gnet itself freed many
  temporaries (after building a model, after a DST update).
- ``huge(t)``: asks for 2 MiB pages on a fresh buffer of 4 MiB or more (the native ops' outputs:
  gathered activations, gradients), which the threshold maps afresh at every step. One 4096-wide
  layer, forward + backward at batch 256 (``benchmarks/hugepages.py``): 7,134 page faults a step
  without, 2,229 with, the step 2-4% faster (noisy); perf-memory's peak unchanged (0.31 / 0.30).
  ``G2G_HUGEPAGES=0`` (read at import) turns it off.

All of them are no-ops where glibc is not the allocator.
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
TRIM_THRESHOLD = 32 << 20  # bytes of free heap top kept mapped: a step's freed blocks below MMAP_THRESHOLD
_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD = -3, -1  # glibc's mallopt parameter numbers
_MADV_HUGEPAGE = 14  # Linux's madvise advice number

try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _trim, _mallopt, _madvise = _libc.malloc_trim, _libc.mallopt, _libc.madvise
    _trim.argtypes = [ctypes.c_size_t]
    _mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    _madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
except (OSError, AttributeError):  # not glibc
    _trim = _mallopt = _madvise = None

_limited = False  # limit_retention has run (or keep_defaults forbade it)
_applied = False  # g2gnet changed the thresholds in this process


def limit_retention() -> None:
    """Set glibc's mmap and trim thresholds once per process (see the module doc)."""
    global _limited, _applied
    if _limited:
        return
    _limited = True
    if _mallopt is None or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    if not switch("G2G_MALLOC", True):
        return
    _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        _mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    _applied = True


def keep_defaults() -> bool:
    """Leave glibc's allocator as it is for the rest of this process (``limit_retention`` does
    nothing after it): a benchmark's dense baseline then runs as in plain PyTorch. False if g2gnet
    has already changed the thresholds in this process (a sparse layer was built before)."""
    global _limited
    _limited = True
    return not _applied


def describe() -> str:
    """The allocator settings of this process, as benchmarks record them."""
    if _mallopt is None:
        return "not glibc"
    if _applied:
        return (f"g2gnet's: mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold "
                + ("the user's" if "MALLOC_TRIM_THRESHOLD_" in os.environ else f"{TRIM_THRESHOLD >> 20} MiB"))
    user = [k for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_") if k in os.environ]
    return "glibc's defaults" + (f" with the user's {', '.join(user)}" if user else "")


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
