"""Build and load the CPU kernels of ``g2gnet/csrc/g2g_kernels.cpp`` (ctypes, plain C ABI).

Why not ``torch.utils.cpp_extension``: it needs ninja and the torch headers and compiles for tens
of seconds; this file includes no torch header and builds with one ``g++`` call in about a second.
The shared object is cached per user (``g2gnet.cache.user_cache()/kernels``) under a
hash of source, flags, compiler and CPU flags, so a binary built with ``-march=native`` is never
reused on a different CPU. Any failure (no compiler, compile error, load error) is remembered,
and the layers use the PyTorch reference path instead. ``G2G_NO_NATIVE=1`` disables them.

Only ``ops.py`` calls these functions, after checking every tensor it passes.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch

from ..cache import user_cache

SOURCE = Path(__file__).resolve().parent.parent / "csrc" / "g2g_kernels.cpp"
ENV_DISABLE = "G2G_NO_NATIVE"

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_error: str | None = None

_P, _I, _C = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
# Argument types of every exported function (pointers are passed as integers from data_ptr()).
SIGNATURES: dict[str, list] = {
    "g2g_csr_spmm": [_I, _I, _I, _P, _P, _C, _P, _P, _I, _P, _I, _P, _P, _P, _I, _C],
    "g2g_csr_sddmm": [_I, _I, _P, _P, _C, _P, _I, _P, _I, _P, _C],
    "g2g_csr_transpose": [_I, _I, _P, _P, _C, _P, _P, _P, _P, _C],
    "g2g_bsr_spmm": [_I, _I, _C, _C, _P, _P, _P, _P, _P, _I, _P, _I, _P, _P, _P, _I, _C],
    "g2g_bsr_sddmm": [_I, _I, _C, _P, _P, _P, _I, _P, _I, _P, _C],
    "g2g_gather_t": [_P, _I, _I, _I, _P, _I, _P, _I, _C],
}


def _cpu_fingerprint() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return platform.processor()


def _flags() -> list[str]:
    arch = os.environ.get("G2G_NATIVE_ARCH", "-march=native")
    return ["-O3", arch, "-fopenmp", "-shared", "-fPIC", "-std=c++17", "-fno-math-errno"]


def cache_dir() -> Path:
    return user_cache() / "kernels"


def _build(cxx: str) -> Path:
    flags = _flags()
    source = SOURCE.read_text()
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    key = hashlib.sha256("\0".join([source, " ".join(flags), version, _cpu_fingerprint()]).encode()).hexdigest()[:16]
    out_dir = cache_dir()
    target = out_dir / f"g2g_kernels_{key}.so"
    if target.exists():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    # Build in a private temp dir, then rename: concurrent processes never load a partial file.
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        so = Path(tmp) / "g2g_kernels.so"
        proc = subprocess.run([cxx, *flags, str(SOURCE), "-o", str(so)], capture_output=True, text=True,
                              timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{cxx} failed: {proc.stderr.strip()[-2000:]}")
        os.replace(so, target)
    return target


def _load() -> ctypes.CDLL:
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise RuntimeError("no C++ compiler (g++/c++) on PATH")
    lib = ctypes.CDLL(str(_build(cxx)))
    for name, argtypes in SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes = argtypes
        fn.restype = None
    return lib


def get() -> ctypes.CDLL | None:
    """The loaded kernel library, or None when disabled or unavailable (reason: ``error()``)."""
    global _lib, _tried, _error
    if os.environ.get(ENV_DISABLE, "") not in ("", "0"):
        return None
    if _tried:
        return _lib
    with _lock:
        if not _tried:
            try:
                _lib = _load()
            except Exception as exc:  # any failure means: use the PyTorch reference path
                _error = f"{type(exc).__name__}: {exc}"
                warnings.warn(f"g2gnet: native CPU kernels unavailable, using PyTorch ops ({_error})",
                              RuntimeWarning, stacklevel=2)
            _tried = True
    return _lib


@torch.compiler.assume_constant_result  # torch.compile asks it while tracing: no lock in the graph
def available() -> bool:
    return get() is not None


def error() -> str | None:
    """Why the kernels could not be built or loaded (None if they were, or were not tried)."""
    return _error


def _reset_for_tests() -> None:
    global _lib, _tried, _error
    with _lock:
        _lib, _tried, _error = None, False, None
