"""Where each dataset's official files are: names, URLs, checksums, and the lookup order.

Lookup order (SPEC §4), first complete copy wins:

1. the explicit ``data_dir`` argument (the CLI's ``--data-dir``), else ``$G2G_DATA``;
2. the user cache (``g2gnet.cache.user_cache()``: ``$G2G_CACHE``, else ``~/.cache/g2gnet``);
3. system locations (Fashion-MNIST: ``/usr/share/datasets/fashion-mnist`` from the Debian package
   ``dataset-fashion-mnist``);
4. download with md5 verification, into the data dir of step 1 if one is given (the user said
   where data lives), else into the user cache.

Layout inside a root: ``<root>/fashion-mnist/<file>.gz`` (or un-gzipped, or directly in
``<root>/``), ``<root>/mnist/<file>.gz``, ``<root>/cifar-10-batches-py/...`` or the tarball
``<root>/cifar-10-python.tar.gz`` (extracted after its md5 check), likewise ``cifar-100-python``.

All tables are plain module-level dicts so tests can point them at tiny files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from g2gnet.cache import user_cache
from g2gnet.data.archive import extract_members
from g2gnet.data.checksums import md5_file, verify_md5
from g2gnet.data.download import DownloadError, download as download_file
from g2gnet.errors import G2GError

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class IdxSource:
    """MNIST-style dataset: four IDX files, each downloaded separately as ``<file>.gz``."""

    folder: str  # sub-directory of a root
    url: str  # official base URL; files are <url>/<file>.gz
    flat: bool  # also accept the files directly in a root (the Debian package's layout)


@dataclass(frozen=True)
class TarSource:
    """CIFAR-style dataset: one official tarball holding ``<folder>/<files>``."""

    folder: str
    files: tuple[str, ...]
    tarball: str
    url: str  # official base URL; the tarball is <url>/<tarball>


SOURCES: dict[str, IdxSource | TarSource] = {
    "fashion-mnist": IdxSource("fashion-mnist", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com", flat=True),
    # MNIST uses the same file names as Fashion-MNIST, so a flat root would be ambiguous: subdir only.
    "mnist": IdxSource("mnist", "https://ossci-datasets.s3.amazonaws.com/mnist", flat=False),
    "cifar10": TarSource(
        "cifar-10-batches-py",
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"),
        "cifar-10-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz",
    ),
    "cifar100": TarSource(
        "cifar-100-python", ("train", "test", "meta"), "cifar-100-python.tar.gz", "https://www.cs.toronto.edu/~kriz"
    ),
}

# md5 of the DECOMPRESSED IDX content: the Debian package re-gzips the files, so the md5 of its
# .gz files differs from the official ones while the content is identical.
IDX_MD5: dict[str, dict[str, str]] = {
    "fashion-mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
}

# md5 of the official .gz files, checked on download (before the decompressed check at load).
GZ_MD5: dict[str, dict[str, str]] = {
    "fashion-mnist": {
        "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "mnist": {
        "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
    },
}

# Only the tarballs are checksummed. Extracted CIFAR pickles are validated structurally (rows,
# columns, label ranges) instead: the genuine CIFAR-10 this team unpacks from a compact pack differs
# from the official pickles in b'filenames' only, so a per-file md5 would reject genuine data.
TARBALL_MD5: dict[str, str] = {
    "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
    "cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85",
}

SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),  # Debian: dataset-fashion-mnist
}

MIRROR_ENV = "G2G_MIRROR"  # base URL serving every file as <mirror>/<filename>
DATA_ENV = "G2G_DATA"


def given_data_dir(data_dir: str | Path | None) -> Path | None:
    """The explicit ``data_dir``, else ``$G2G_DATA``, else None."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else None


def url_for(name: str, filename: str) -> str:
    """Official URL of one file, or ``$G2G_MIRROR/<filename>`` when a mirror is set."""
    mirror = os.environ.get(MIRROR_ENV)
    base = mirror if mirror else SOURCES[name].url
    return f"{base.rstrip('/')}/{filename}"


def locate(name: str, data_dir: str | Path | None = None, download: bool = True) -> dict[str, Path]:
    """Paths of the dataset's files (official name without ``.gz`` -> path), found or fetched.

    Raises ``G2GError`` saying where it looked and what to do when the files are neither found nor
    downloadable, or when a tarball/download fails its md5 check.
    """
    src = SOURCES[name]
    given = given_data_dir(data_dir)
    roots = [r for r in (given, user_cache()) if r is not None]
    systems = SYSTEM_DIRS.get(name, ())
    if isinstance(src, IdxSource):
        return _locate_idx(name, src, given, roots, systems, download)
    return _locate_tar(name, src, given, roots, systems, download)


def _find_idx(directory: Path) -> dict[str, Path] | None:
    """All four IDX files in ``directory`` (``.gz`` preferred over raw), or None if any is missing."""
    found = {}
    for f in IDX_FILES:
        hit = next((p for p in (directory / f"{f}.gz", directory / f) if p.is_file()), None)
        if hit is None:
            return None
        found[f] = hit
    return found


def _locate_idx(
    name: str, src: IdxSource, given: Path | None, roots: list[Path], systems: tuple[Path, ...], allow_download: bool
) -> dict[str, Path]:
    candidates = [d for r in roots for d in ((r / src.folder, r) if src.flat else (r / src.folder,))]
    candidates += systems
    for d in candidates:
        if (found := _find_idx(d)) is not None:
            return found
    target = (given or user_cache()) / src.folder
    if not allow_download:
        raise G2GError(_not_found(name, candidates, "download disabled"))
    for f in IDX_FILES:
        if not (target / f"{f}.gz").is_file() and not (target / f).is_file():
            _fetch(name, f"{f}.gz", target / f"{f}.gz", GZ_MD5[name][f], candidates)
    found = _find_idx(target)
    assert found is not None  # every missing file was just downloaded
    return found


def _locate_tar(
    name: str, src: TarSource, given: Path | None, roots: list[Path], systems: tuple[Path, ...], allow_download: bool
) -> dict[str, Path]:
    looked = []
    for r in [*roots, *systems]:
        folder = r / src.folder
        looked += [folder, r / src.tarball]
        if all((folder / f).is_file() for f in src.files):
            return {f: folder / f for f in src.files}
        if (r / src.tarball).is_file():
            # A read-only root (a shared or system directory) is extracted into the user cache,
            # which is searched before system locations next time.
            return _extract(src, r / src.tarball, r if os.access(r, os.W_OK) else user_cache())
    if not allow_download:
        raise G2GError(_not_found(name, looked, "download disabled"))
    target = given or user_cache()
    tarball = _fetch(name, src.tarball, target / src.tarball, TARBALL_MD5[src.tarball], looked)
    return _extract(src, tarball, target)


def _extract(src: TarSource, tarball: Path, root: Path) -> dict[str, Path]:
    verify_md5(md5_file(tarball), TARBALL_MD5[src.tarball], tarball)
    folder = extract_members(tarball, src.folder, src.files, root)
    return {f: folder / f for f in src.files}


def _fetch(name: str, filename: str, dest: Path, md5: str, looked: list[Path]) -> Path:
    try:
        return download_file(url_for(name, filename), dest, md5)
    except DownloadError as e:
        raise G2GError(_not_found(name, looked, str(e))) from None


def _not_found(name: str, looked: list[Path], reason: str) -> str:
    hint = "install the Debian package dataset-fashion-mnist, " if name == "fashion-mnist" else ""
    src = SOURCES[name]
    files = f"{src.tarball} or {src.folder}/" if isinstance(src, TarSource) else f"{src.folder}/<file>.gz"
    return (
        f"{name} not found ({reason}); looked in: {', '.join(map(str, dict.fromkeys(looked)))}. "
        f"To fix: {hint}set --data-dir or ${DATA_ENV} to a directory holding the official files "
        f"({files}), or put them in {user_cache()}"
    )
