"""Build and load the CPU kernels of ``g2gnet/csrc/g2g_kernels.cpp`` (ctypes, plain C ABI).

Why not ``torch.utils.cpp_extension``: it needs ninja and the torch headers and compiles for tens
of seconds; this file includes no torch header and builds with one ``g++`` call in about a second.
The shared object is cached per user (``g2gnet.cache.user_cache()/kernels``) under a
hash of source, flags, compiler and CPU flags, so a binary built with ``-march=native`` is never
reused on a different CPU. Any failure (no compiler, compile error, load error) is remembered,
and the layers use the PyTorch reference path instead. ``G2G_NO_NATIVE=1`` disables them.

The argument types come from the ``extern "C"`` prototypes of the source itself (``prototypes``),
so the C++ file is the one place they are written; below, one typed Python function per kernel
names its arguments in the C order (a test holds the two together). They check nothing: the
ops of ``g2gnet.kernels`` check every tensor they pass (shape, dtype, strides, device), and
``benchmarks/parts.py`` calls them directly on tensors built the same way.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch
from torch import Tensor

from ..cache import user_cache
from ..env import switch

SOURCE = Path(__file__).resolve().parent.parent / "csrc" / "g2g_kernels.cpp"
ENV_DISABLE = "G2G_NO_NATIVE"

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_error: str | None = None
_width: int | None = None  # vector_width()

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
    for name, args in prototypes().items():
        fn = getattr(lib, name)
        fn.argtypes = [_CTYPES[ctype] for ctype, _ in args]
        fn.restype = None
    return lib


# C argument type -> ctypes: pointers travel as integers (``Tensor.data_ptr()``) or None.
_CTYPES = {"int64_t": ctypes.c_int64, "int": ctypes.c_int, "ptr": ctypes.c_void_p}


def struct_fields(name: str, source: str | None = None) -> list[tuple[str, str]]:
    """The fields of ``struct name`` in the C++ source: [(type, field name)], type as in
    ``prototypes``."""
    text = SOURCE.read_text() if source is None else source
    body = re.search(r"struct %s \{([^}]*)\};" % name, text).group(1)
    out = []
    for decl in filter(None, (d.strip() for d in body.split(";"))):
        ctype, _, field = " ".join(decl.split()).rpartition(" ")
        out.append(("ptr" if "*" in ctype or field.startswith("*") else ctype.replace("const ", ""), field.lstrip("*")))
    return out


class InferArgs(ctypes.Structure):
    """``struct g2g_infer_args`` (fields read from the C++ source)."""

    _fields_ = [(field, _CTYPES[ctype]) for ctype, field in struct_fields("g2g_infer_args")]


def prototypes(source: str | None = None) -> dict[str, list[tuple[str, str]]]:
    """The exported kernels of the C++ source: name -> [(type, argument name)] in order, type one of
    ``int64_t``, ``int``, ``ptr``."""
    text = SOURCE.read_text() if source is None else source
    body = text[text.index('extern "C" {'):]
    out = {}
    for name, params in re.findall(r"^void (g2g_\w+)\(([^)]*)\)\s*[{;]", body, flags=re.M):
        if name in out:  # a declaration before its definition
            continue
        args = []
        for param in " ".join(params.split()).split(","):
            ctype, _, arg = param.strip().rpartition(" ")
            ctype = "ptr" if "*" in ctype or arg.startswith("*") else ctype.replace("const ", "")
            args.append((ctype, arg.lstrip("*")))
        out[name] = args
    return out


def get() -> ctypes.CDLL | None:
    """The loaded kernel library, or None when disabled (``G2G_NO_NATIVE``, read at the first call)
    or unavailable (reason: ``error()``)."""
    global _lib, _tried, _error
    if _tried:  # every layer call asks: no lock, no environment lookup
        return _lib
    with _lock:
        if not _tried and switch(ENV_DISABLE, False):
            _error, _tried = f"disabled by {ENV_DISABLE}", True
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
    global _lib, _tried, _error, _width
    with _lock:
        _lib, _tried, _error, _width = None, False, None, None


# -- one typed function per kernel (arguments in the C order; see g2g_kernels.cpp) ------------------
def _ptr(t) -> int | None:
    return None if t is None else t.data_ptr()


def csr_spmm(nrows: int, Bp: int, chunk: int, rowptr: Tensor, cols: Tensor, index_bytes: int, vals: Tensor,
             X: Tensor, ldx: int, init: Tensor | None, ldi: int, bias: Tensor | None, dst: Tensor | None,
             Y: Tensor, ldy: int, nthreads: int, relu: bool = False) -> None:
    get().g2g_csr_spmm(nrows, Bp, chunk, rowptr.data_ptr(), cols.data_ptr(), index_bytes, vals.data_ptr(),
                       X.data_ptr(), ldx, _ptr(init), ldi, _ptr(bias), _ptr(dst), Y.data_ptr(), ldy, int(relu), nthreads)


def csr_sddmm(nrows: int, Bp: int, rowptr: Tensor, cols: Tensor, index_bytes: int, A: Tensor, lda: int,
              X: Tensor, ldx: int, out: Tensor, nthreads: int) -> None:
    get().g2g_csr_sddmm(nrows, Bp, rowptr.data_ptr(), cols.data_ptr(), index_bytes, A.data_ptr(), lda,
                        X.data_ptr(), ldx, out.data_ptr(), nthreads)


def csr_transpose(nrows: int, ncols: int, rowptr: Tensor, cols: Tensor, index_bytes: int, vals: Tensor,
                  colptr: Tensor, t_rows: Tensor, t_vals: Tensor | None, t_off: Tensor | None, nthreads: int) -> None:
    get().g2g_csr_transpose(nrows, ncols, rowptr.data_ptr(), cols.data_ptr(), index_bytes, vals.data_ptr(),
                            colptr.data_ptr(), t_rows.data_ptr(), _ptr(t_vals), _ptr(t_off), nthreads)


def csr_gather(n: int, t_rows: Tensor, t_off: Tensor, index_bytes: int, rowptr: Tensor, vals: Tensor,
               t_vals: Tensor, nthreads: int) -> None:
    get().g2g_csr_gather(n, t_rows.data_ptr(), t_off.data_ptr(), index_bytes, rowptr.data_ptr(), vals.data_ptr(),
                         t_vals.data_ptr(), nthreads)


def csr_grads(nrows: int, Bp: int, t_rowptr: Tensor, t_rows: Tensor, t_off: Tensor, index_bytes: int,
              rowptr: Tensor, t_vals: Tensor, A: Tensor, lda: int, X: Tensor, ldx: int, init: Tensor | None, ldi: int,
              dst: Tensor | None, Y: Tensor, ldy: int, gv: Tensor, nthreads: int) -> None:
    get().g2g_csr_grads(nrows, Bp, t_rowptr.data_ptr(), t_rows.data_ptr(), t_off.data_ptr(), index_bytes,
                        rowptr.data_ptr(), t_vals.data_ptr(), A.data_ptr(), lda, X.data_ptr(), ldx, _ptr(init), ldi,
                        _ptr(dst), Y.data_ptr(), ldy, gv.data_ptr(), nthreads)


def bsr_spmm(nrows: int, Bp: int, T: int, transposed: int, trowptr: Tensor, tcols: Tensor, tidx: Tensor | None,
             tvals: Tensor, blk: Tensor | None, og: int, ig: int, bsr: int, bsc: int, X: Tensor, ldx: int,
             init: Tensor | None, ldi: int, bias: Tensor | None, dst: Tensor | None, Y: Tensor, ldy: int, nthreads: int,
             relu: bool = False) -> None:
    get().g2g_bsr_spmm(nrows, Bp, T, transposed, trowptr.data_ptr(), tcols.data_ptr(), _ptr(tidx), tvals.data_ptr(),
                       _ptr(blk), og, ig, bsr, bsc, X.data_ptr(), ldx, _ptr(init), ldi, _ptr(bias), _ptr(dst),
                       Y.data_ptr(), ldy, int(relu), nthreads)


def bsr_sddmm(ntrows: int, Bp: int, T: int, trowptr: Tensor, tcols: Tensor, A: Tensor, lda: int, X: Tensor,
              ldx: int, out: Tensor, nthreads: int) -> None:
    get().g2g_bsr_sddmm(ntrows, Bp, T, trowptr.data_ptr(), tcols.data_ptr(), A.data_ptr(), lda, X.data_ptr(), ldx,
                        out.data_ptr(), nthreads)


def gather_t(x: Tensor, B: int, sb: int, si: int, perm: Tensor | None, n: int, out: Tensor, ldo: int,
             nthreads: int, relu_out: Tensor | None = None) -> None:
    """``relu_out`` (x's strides): a ReLU's output; x, a gradient of it, is copied through its backward."""
    get().g2g_gather_t(x.data_ptr(), _ptr(relu_out), B, sb, si, _ptr(perm), n, out.data_ptr(), ldo, nthreads)


def infer(B: int, x: Tensor, ldx: int, in_perm: Tensor | None, n_out: int, n_in: int, og: int, ig: int,
          intra: Tensor, block_mask: Tensor | None, T: int, rowptr: Tensor, cols: Tensor, index_bytes: int,
          vals: Tensor, bias: Tensor | None, out_perm: Tensor | None, y: Tensor, ldy: int, work: Tensor,
          nthreads: int) -> None:
    get().g2g_infer(B, x.data_ptr(), ldx, _ptr(in_perm), n_out, n_in, og, ig, intra.data_ptr(), _ptr(block_mask), T,
                    rowptr.data_ptr(), cols.data_ptr(), index_bytes, vals.data_ptr(), _ptr(bias), _ptr(out_perm),
                    y.data_ptr(), ldy, work.data_ptr(), nthreads)


@torch.compiler.assume_constant_result  # the dispatcher asks it while torch.compile traces: a constant
def vector_width() -> int:
    """Floats per vector of the loaded build (``g2g_vector_width``; the kernels take batch columns in
    multiples of it), 16 (the widest build's) without one. Asked once."""
    global _width
    if _width is None:
        lib, out = get(), ctypes.c_int64(16)
        if lib is not None:
            lib.g2g_vector_width(ctypes.addressof(out))
        _width = int(out.value)
    return _width


def infer_call(args: ctypes.pointer) -> None:
    """``g2g_infer`` with its arguments in an ``InferArgs`` (a pointer to one)."""
    get().g2g_infer_call(args)


def infer_chain(args: ctypes.Array, n: int) -> None:
    """``g2g_infer_call`` on ``args[0]``, ..., ``args[n - 1]`` in turn (an array of ``InferArgs``
    pointers; each one's ``x`` the previous one's ``y``)."""
    get().g2g_infer_chain(ctypes.addressof(args), n)


KERNELS = {"g2g_vector_width": vector_width, "g2g_csr_spmm": csr_spmm, "g2g_csr_sddmm": csr_sddmm,
           "g2g_csr_transpose": csr_transpose, "g2g_csr_gather": csr_gather, "g2g_csr_grads": csr_grads,
           "g2g_bsr_spmm": bsr_spmm, "g2g_bsr_sddmm": bsr_sddmm, "g2g_gather_t": gather_t, "g2g_infer": infer,
           "g2g_infer_call": infer_call, "g2g_infer_chain": infer_chain}
