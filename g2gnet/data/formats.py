"""Readers of the official on-disk formats: IDX (MNIST, Fashion-MNIST) and CIFAR python pickles.

Every reader validates structure and raises a one-line ``G2GError`` naming the file and what was
expected, so a truncated or foreign file can never turn into a silently partial dataset (SPEC §4).
Checksums are not this module's business (see ``checksums``/``sources``); this module only knows
what a well-formed file looks like.
"""

from __future__ import annotations

import codecs
import gzip
import pickle
import zlib
from pathlib import Path

import numpy as np

from g2gnet.errors import G2GError

try:  # numpy >= 2 moved the pickle helpers to numpy._core; old pickles still name numpy.core
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

GZIP_MAGIC = b"\x1f\x8b"
IDX_UBYTE = 0x08  # IDX type code of unsigned bytes, the only type the datasets use

CIFAR_ROW = 3 * 32 * 32  # 1024 R values, then 1024 G, then 1024 B, each a row-major 32x32 plane


# ----------------------------------------------------------------------------------------- IDX


def idx_bytes(path: Path) -> bytes:
    """The decompressed content of an IDX file, gzipped or raw.

    Compression is detected from the gzip magic bytes, not the file name, so a renamed file still
    reads. The md5 of these bytes is what ``sources`` checks: it is the same for the official
    ``.gz`` files and for the Debian package's re-gzipped copies.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise G2GError(f"cannot read {path}: {e.strerror or e}") from None
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as e:  # truncated stream, bad CRC, garbage
        raise G2GError(f"{path} is truncated or not a valid gzip file ({e})") from None


def parse_idx(data: bytes, path: Path, ndim: int) -> np.ndarray:
    """Parse IDX bytes (magic, big-endian dims, uint8 payload) into an array of ``ndim`` dims.

    The byte length must match the header exactly: shorter means truncated, longer means a
    foreign or concatenated file. ``path`` is only used in error messages.
    """
    header = 4 + 4 * ndim
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise G2GError(f"{path} is not an IDX file (bad magic number)")
    if data[2] != IDX_UBYTE or data[3] != ndim:
        raise G2GError(
            f"{path}: IDX header says type 0x{data[2]:02x} with {data[3]} dims, "
            f"expected unsigned bytes (0x08) with {ndim} dims"
        )
    if len(data) < header:
        raise G2GError(f"{path} is truncated (IDX header incomplete)")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) < expected:
        raise G2GError(f"{path} is truncated: {len(data)} bytes, expected {expected} for shape {dims}")
    if len(data) > expected:
        raise G2GError(f"{path} has {len(data) - expected} trailing bytes after shape {dims}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read and validate an IDX file (gz or raw); see ``idx_bytes`` and ``parse_idx``."""
    return parse_idx(idx_bytes(path), path, ndim)


# --------------------------------------------------------------------------------------- CIFAR


class _DataOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, lists, dicts and strings, nothing else.

    The CIFAR files are pickles; a plain ``pickle.load`` would run whatever code a tampered file
    names. Only the globals that numpy array pickles (official Python-2 files, and the protocol
    2/4/5 files that tests or other tools write) actually reference are allowed.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
        ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
        ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
        ("numpy.core.numeric", "_frombuffer"): _numeric._frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _numeric._frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # bytes in protocol-2 pickles from py3
        ("__builtin__", "bytes"): bytes,  # b"" in protocol-2 pickles from py3
        ("builtins", "bytes"): bytes,
    }

    def find_class(self, module: str, name: str) -> object:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}") from None


def load_pickle(path: Path, what: str) -> dict:
    """Load a CIFAR pickle as a dict with bytes keys (``encoding="bytes"``, as the official docs do).

    ``what`` describes the expected content for the error message.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = _DataOnlyUnpickler(f, encoding="bytes").load()
    except OSError as e:
        raise G2GError(f"cannot read {path}: {e.strerror or e}") from None
    # Unpickling untrusted bytes can fail with almost any exception type (EOFError when
    # truncated, UnpicklingError, ValueError, KeyError, struct errors ...): all mean "not the file".
    except Exception as e:  # noqa: BLE001
        raise G2GError(f"{path} is truncated or not a CIFAR pickle, expected {what} ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise G2GError(f"{path} holds a {type(obj).__name__}, expected {what}")
    return obj


def read_cifar_batch(
    path: Path, label_key: bytes, num_classes: int, expected_rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR data pickle: images uint8 [N, 3, 32, 32] and labels int64 [N].

    ``label_key`` is ``b"labels"`` (CIFAR-10) or ``b"fine_labels"``/``b"coarse_labels"``
    (CIFAR-100). ``expected_rows`` (10000 per CIFAR-10 batch, 50000/10000 for CIFAR-100) guards
    against a well-formed but partial file; the caller passes it so the tests can use tiny files.
    """
    what = f"a dict with b'data' (N, {CIFAR_ROW}) uint8 and {label_key!r}"
    obj = load_pickle(path, what)
    data, labels = obj.get(b"data"), obj.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_ROW:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise G2GError(f"{path}: b'data' is {got}, expected (N, {CIFAR_ROW}) uint8")
    if labels is None:
        raise G2GError(f"{path} has no {label_key!r}, expected {what}")
    y = _integer_labels(labels, path, label_key)
    n = data.shape[0]
    if y.shape != (n,):
        raise G2GError(f"{path}: {label_key!r} has shape {y.shape}, expected ({n},) to match b'data'")
    if expected_rows is not None and n != expected_rows:
        raise G2GError(f"{path} has {n} rows, expected {expected_rows}")
    check_labels(y, num_classes, path)  # on the labels as stored, before any cast can wrap them
    y = y.astype(np.int64)  # in [0, num_classes) now, so exact
    # The row layout is channel-major (R plane, G plane, B plane), so a reshape gives NCHW directly.
    return data.reshape(n, 3, 32, 32), y


def _integer_labels(labels: object, path: Path, label_key: bytes) -> np.ndarray:
    """``labels`` as an integer array of its own dtype (no cast yet), or a G2GError: floats, bools
    and strings are refused, never truncated or parsed into class ids."""
    if isinstance(labels, np.ndarray):
        if labels.dtype.kind in "iu":
            return labels
        got = f"{labels.dtype} array"
    elif isinstance(labels, (list, tuple)):
        bad = [v for v in labels if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_))]
        if not bad:
            # object dtype keeps Python ints of any size exact (the range check reads them as such)
            return np.array(labels, dtype=object) if labels else np.zeros(0, dtype=np.int64)
        got = f"a list holding {type(bad[0]).__name__} {bad[0]!r}"
    else:
        got = type(labels).__name__
    raise G2GError(f"{path}: {label_key!r} is {got}, expected a list of integers")


def read_cifar_meta(path: Path, key: bytes, expected_count: int) -> list[str]:
    """Class names from ``batches.meta`` (key ``b"label_names"``) or CIFAR-100 ``meta``."""
    obj = load_pickle(path, f"a dict with {key!r}")
    names = obj.get(key)
    if not isinstance(names, list) or len(names) != expected_count or not all(isinstance(s, (bytes, str)) for s in names):
        raise G2GError(f"{path}: {key!r} is not a list of {expected_count} class names")
    return [s.decode("utf-8") if isinstance(s, bytes) else s for s in names]


def check_labels(y: np.ndarray, num_classes: int, path: Path) -> None:
    """Labels must lie in [0, num_classes): a foreign label set would silently corrupt training."""
    if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise G2GError(f"{path}: labels range {int(y.min())}..{int(y.max())}, expected 0..{num_classes - 1}")
