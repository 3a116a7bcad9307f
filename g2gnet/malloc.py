"""Give freed heap memory back to the operating system after a burst of temporaries.

glibc keeps freed chunks below its mmap threshold (which grows up to 32 MiB at run time) in the
heap, so building a large G2G model leaves tens of MiB of freed temporaries resident, and the
tensors of training are then allocated beside them. ``malloc_trim(0)`` returns every free page;
it changes no allocator setting. Called where g2gnet itself freed many temporaries (after
building a model, after a DST update). A no-op where glibc is not the allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util

try:
    _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    _trim.argtypes = [ctypes.c_size_t]
except (OSError, AttributeError):  # not glibc
    _trim = None


def trim() -> None:
    if _trim is not None:
        _trim(0)
