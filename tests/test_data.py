"""Tests of g2gnet.data on tiny official-format files written here, plus real data when present.

Every test runs with HOME, XDG_CACHE_HOME, G2G_DATA, G2G_MIRROR and the system locations pointed
at temporary directories, so nothing reads or writes the real user cache.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import shutil
import socket
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from g2gnet.data import DATASETS, Batches, Dataset, load_dataset, normalize, split_validation
from g2gnet.data import sources
from g2gnet.data.augment import crop_flip, random_crop_flip
from g2gnet.data.datasets import FASHION_MNIST_CLASSES
from g2gnet.errors import G2GError

REAL_G2G_DATA = os.environ.get("G2G_DATA")  # captured before the isolation fixture clears it
REAL_FMNIST = Path("/usr/share/datasets/fashion-mnist")
TINY = {"fashion-mnist": (6, 4), "mnist": (6, 4), "cifar10": (10, 3), "cifar100": (8, 4)}  # (train, test)
IDX_NAMES = sources.IDX_FILES


# --------------------------------------------------------------------------- writers and fixtures


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def idx_content(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_idx_set(directory: Path, seed: int, n_train: int = 6, n_test: int = 4, gz: bool = True) -> dict[str, np.ndarray]:
    """The four IDX files of a tiny MNIST-like dataset; returns the arrays by file name."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        content = idx_content(arr)
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(content))
        else:
            (directory / name).write_bytes(content)
    return arrays


def trust_idx(monkeypatch: pytest.MonkeyPatch, name: str, arrays: dict[str, np.ndarray]) -> None:
    """Make the decompressed-md5 table expect these arrays' files."""
    for f, arr in arrays.items():
        monkeypatch.setitem(sources.IDX_MD5[name], f, md5(idx_content(arr)))


def cifar_rows(n: int, offset: int) -> np.ndarray:
    """Rows whose value at (image i, position p) is (7 p + i + offset) mod 256: every pixel known."""
    return ((np.arange(3072)[None, :] * 7 + np.arange(n)[:, None] + offset) % 256).astype(np.uint8)


def dump(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))  # the official files are protocol-2 pickles


CIFAR10_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def write_cifar10(root: Path, per_batch: int = 2, n_test: int = 3, label_shift: int = 0) -> dict[str, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    xs, ys = [], []
    for b in range(1, 6):
        x = cifar_rows(per_batch, offset=10 * b)
        y = [(b + i + label_shift) % 10 for i in range(per_batch)]
        dump(folder / f"data_batch_{b}", {b"batch_label": b"training batch", b"labels": y, b"data": x, b"filenames": []})
        xs.append(x)
        ys += y
    tx = cifar_rows(n_test, offset=99)
    ty = [(i * 3) % 10 for i in range(n_test)]
    dump(folder / "test_batch", {b"batch_label": b"testing batch", b"labels": ty, b"data": tx, b"filenames": []})
    dump(folder / "batches.meta", {b"num_cases_per_batch": per_batch, b"label_names": CIFAR10_NAMES, b"num_vis": 3072})
    return {"train_x": np.concatenate(xs), "train_y": np.array(ys), "test_x": tx, "test_y": np.array(ty)}


def write_cifar100(root: Path, n_train: int = 8, n_test: int = 4) -> dict[str, np.ndarray]:
    folder = root / "cifar-100-python"
    out = {}
    for split, n, off in (("train", n_train, 1), ("test", n_test, 2)):
        fine = [(17 * i + off) % 100 for i in range(n)]
        coarse = [f % 20 for f in fine]
        x = cifar_rows(n, offset=off)
        dump(folder / split, {b"filenames": [], b"batch_label": b"", b"fine_labels": fine, b"coarse_labels": coarse, b"data": x})
        out[split] = (x, np.array(fine), np.array(coarse))
    dump(folder / "meta", {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    })
    return out


def make_tarball(path: Path, members: dict[str, bytes]) -> str:
    """A .tar.gz with the given member names and contents; returns its md5."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return md5(path.read_bytes())


def tarball_of(folder: Path, dest: Path) -> str:
    return make_tarball(dest, {f"{folder.name}/{p.name}": p.read_bytes() for p in sorted(folder.iterdir())})


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("G2G_DATA", raising=False)
    monkeypatch.delenv("G2G_MIRROR", raising=False)
    monkeypatch.setenv("no_proxy", "*")  # the local test server must not go through a proxy
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setattr(sources, "SYSTEM_DIRS", {"fashion-mnist": (tmp_path / "system-fmnist",)})


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registry sizes of the tiny files, so the row-count checks accept them."""
    for name, (n_train, n_test) in TINY.items():
        monkeypatch.setitem(DATASETS, name, dataclasses.replace(DATASETS[name], train_size=n_train, test_size=n_test))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory served on 127.0.0.1 and set as $G2G_MIRROR; the server stops after the test."""
    www = tmp_path / "www"
    www.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("G2G_MIRROR", f"http://127.0.0.1:{server.server_port}/")
    try:
        yield www
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*")) if directory.exists() else []


# ---------------------------------------------------------------------------------- IDX datasets


def test_fashion_mnist_tiny_loads_exact_pixels(tmp_path, monkeypatch, tiny):
    arrays = write_idx_set(tmp_path / "data" / "fashion-mnist", seed=0)
    trust_idx(monkeypatch, "fashion-mnist", arrays)
    ds = load_dataset("fashion-mnist", data_dir=tmp_path / "data", download=False)
    assert ds.train_x.shape == (6, 1, 28, 28) and ds.train_x.dtype == torch.uint8
    assert ds.test_x.shape == (4, 1, 28, 28)
    assert ds.train_y.dtype == torch.int64 and ds.train_y.shape == (6,)
    assert np.array_equal(ds.train_x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(ds.test_y.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert ds.num_classes == 10 and ds.classes == FASHION_MNIST_CLASSES
    pixels = arrays["train-images-idx3-ubyte"] / 255.0
    assert ds.mean == pytest.approx((pixels.mean(),)) and ds.std == pytest.approx((pixels.std(),))


def test_idx_raw_files_flat_in_root(tmp_path, monkeypatch, tiny):
    arrays = write_idx_set(tmp_path / "flat", seed=1, gz=False)  # un-gzipped, directly in the root
    trust_idx(monkeypatch, "fashion-mnist", arrays)
    ds = load_dataset("fashion-mnist", data_dir=tmp_path / "flat", download=False)
    assert np.array_equal(ds.test_x[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])


def test_mnist_needs_its_subdir(tmp_path, monkeypatch, tiny):
    # MNIST and Fashion-MNIST share file names: a flat root must not be taken for MNIST.
    write_idx_set(tmp_path / "data", seed=2)
    with pytest.raises(G2GError, match="mnist not found"):
        load_dataset("mnist", data_dir=tmp_path / "data", download=False)
    arrays = write_idx_set(tmp_path / "data" / "mnist", seed=2)
    trust_idx(monkeypatch, "mnist", arrays)
    ds = load_dataset("mnist", data_dir=tmp_path / "data", download=False)
    assert ds.classes == [str(d) for d in range(10)]
    assert np.array_equal(ds.train_y.numpy(), arrays["train-labels-idx1-ubyte"])


def test_idx_md5_mismatch_names_file_and_both_md5s(tmp_path, tiny):
    arrays = write_idx_set(tmp_path / "data" / "fashion-mnist", seed=3)
    with pytest.raises(G2GError) as e:
        load_dataset("fashion-mnist", data_dir=tmp_path / "data", download=False)
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg
    assert sources.IDX_MD5["fashion-mnist"]["train-images-idx3-ubyte"] in msg
    assert md5(idx_content(arrays["train-images-idx3-ubyte"])) in msg


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_idx_names_the_file(tmp_path, monkeypatch, tiny, gz):
    folder = tmp_path / "data" / "fashion-mnist"
    arrays = write_idx_set(folder, seed=4, gz=gz)
    trust_idx(monkeypatch, "fashion-mnist", arrays)
    victim = folder / ("t10k-images-idx3-ubyte" + (".gz" if gz else ""))
    victim.write_bytes(victim.read_bytes()[:-50])
    with pytest.raises(G2GError, match="truncated") as e:
        load_dataset("fashion-mnist", data_dir=tmp_path / "data", download=False)
    assert str(victim) in str(e.value)


def test_idx_foreign_header_rejected(tmp_path, monkeypatch, tiny):
    folder = tmp_path / "data" / "fashion-mnist"
    arrays = write_idx_set(folder, seed=5)
    trust_idx(monkeypatch, "fashion-mnist", arrays)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x0d\x01" + (6).to_bytes(4, "big") + bytes(24)))
    with pytest.raises(G2GError, match=r"train-labels-idx1-ubyte.gz.*expected unsigned bytes"):
        load_dataset("fashion-mnist", data_dir=tmp_path / "data", download=False)


def test_idx_wrong_item_count_rejected(tmp_path, monkeypatch, tiny):
    arrays = write_idx_set(tmp_path / "data" / "fashion-mnist", seed=6, n_train=5)  # registry says 6
    trust_idx(monkeypatch, "fashion-mnist", arrays)
    with pytest.raises(G2GError, match="has 5 items, expected 6"):
        load_dataset("fashion-mnist", data_dir=tmp_path / "data", download=False)


# -------------------------------------------------------------------------------- CIFAR datasets


def test_cifar10_channel_order_and_labels(tmp_path, tiny):
    ref = write_cifar10(tmp_path / "data")
    ds = load_dataset("cifar10", data_dir=tmp_path / "data", download=False)
    assert ds.train_x.shape == (10, 3, 32, 32) and ds.test_x.shape == (3, 3, 32, 32)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    # Row layout: 1024 R, then 1024 G, then 1024 B, each row-major 32x32. Image 3 is the second
    # image of data_batch_2 (offset 20 + index 1): value at position p is (7 p + 21) mod 256.
    for c, h, w in [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0), (2, 31, 31), (1, 5, 9)]:
        p = c * 1024 + h * 32 + w
        assert int(ds.train_x[3, c, h, w]) == (7 * p + 21) % 256
    assert np.array_equal(ds.train_x.reshape(10, -1).numpy(), ref["train_x"])
    assert ds.train_y.tolist() == ref["train_y"].tolist()  # batches concatenated in order 1..5
    assert ds.test_y.tolist() == ref["test_y"].tolist()
    assert ds.classes[0] == "airplane" and ds.classes[9] == "truck" and ds.num_classes == 10
    pixels = ref["train_x"].reshape(10, 3, -1) / 255.0
    assert ds.mean == pytest.approx(tuple(pixels.transpose(1, 0, 2).reshape(3, -1).mean(1)))
    assert ds.std == pytest.approx(tuple(pixels.transpose(1, 0, 2).reshape(3, -1).std(1)))


def test_cifar100_fine_and_coarse(tmp_path, tiny):
    ref = write_cifar100(tmp_path / "data")
    fine = load_dataset("cifar100", data_dir=tmp_path / "data", download=False)
    coarse = load_dataset("cifar100", data_dir=tmp_path / "data", download=False, labels="coarse")
    assert fine.num_classes == 100 and len(fine.classes) == 100 and fine.classes[3] == "fine3"
    assert coarse.num_classes == 20 and coarse.classes[19] == "coarse19"
    assert fine.train_y.tolist() == ref["train"][1].tolist()
    assert coarse.test_y.tolist() == ref["test"][2].tolist()
    assert torch.equal(fine.train_x, coarse.train_x)
    assert np.array_equal(fine.test_x.reshape(4, -1).numpy(), ref["test"][0])
    # What a model of the run is built for without loading the data (load_model, mask plots).
    info = DATASETS["cifar100"]
    assert (info.classes_of("fine"), info.classes_of("coarse")) == (fine.num_classes, coarse.num_classes)


def test_cifar_truncated_pickle_names_file(tmp_path, tiny):
    write_cifar10(tmp_path / "data")
    victim = tmp_path / "data" / "cifar-10-batches-py" / "data_batch_4"
    victim.write_bytes(victim.read_bytes()[:3000])
    with pytest.raises(G2GError, match="truncated or not a CIFAR pickle") as e:
        load_dataset("cifar10", data_dir=tmp_path / "data", download=False)
    assert str(victim) in str(e.value)


def test_cifar_structural_checks(tmp_path, tiny):
    root = tmp_path / "data"
    write_cifar10(root, per_batch=3)  # registry expects 10 / 5 = 2 rows per batch
    with pytest.raises(G2GError, match=r"data_batch_1 has 3 rows, expected 2"):
        load_dataset("cifar10", data_dir=root, download=False)
    write_cifar10(root)
    dump(root / "cifar-10-batches-py" / "test_batch", {b"labels": [0, 1, 10], b"data": cifar_rows(3, 0)})
    with pytest.raises(G2GError, match=r"test_batch: labels range 0..10, expected 0..9"):
        load_dataset("cifar10", data_dir=root, download=False)
    dump(root / "cifar-10-batches-py" / "test_batch", {b"labels": [0, 1, 2], b"data": np.zeros((3, 3000), np.uint8)})
    with pytest.raises(G2GError, match=r"test_batch: b'data' is uint8 \(3, 3000\), expected \(N, 3072\)"):
        load_dataset("cifar10", data_dir=root, download=False)
    dump(root / "cifar-10-batches-py" / "test_batch", [1, 2, 3])
    with pytest.raises(G2GError, match="test_batch holds a list"):
        load_dataset("cifar10", data_dir=root, download=False)


@pytest.mark.parametrize("labels, message", [
    ([1.7, 2.9, 0.2], "is a list holding float 1.7, expected a list of integers"),
    ([True, False, True], "is a list holding bool True"),
    (["1", "2", "3"], "is a list holding str '1'"),
    (np.array([1.5, 2.5, 3.5], np.float32), "is float32 array, expected a list of integers"),
    (np.array([True, False, True]), "is bool array"),
    (np.array([2**64 - 1, 1, 2], np.uint64), r"labels range 1..18446744073709551615, expected 0..9"),
    ([2**70, 1, 2], r"labels range 1..1180591620717411303424, expected 0..9"),
])
def test_cifar_labels_must_be_integers_in_range(tmp_path, labels, message):
    from g2gnet.data.formats import read_cifar_batch
    path = tmp_path / "batch"
    dump(path, {b"labels": labels, b"data": cifar_rows(3, 0)})
    with pytest.raises(G2GError, match=message):
        read_cifar_batch(path, b"labels", 10, 3)
    for good in ([1, 2, 3], np.array([1, 2, 3], np.uint8), np.array([1, 2, 3], np.uint64)):
        dump(path, {b"labels": good, b"data": cifar_rows(3, 0)})
        y = read_cifar_batch(path, b"labels", 10, 3)[1]
        assert y.dtype == np.int64 and y.tolist() == [1, 2, 3]


def test_cifar_pickle_cannot_run_code(tmp_path, tiny):
    write_cifar10(tmp_path / "data")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    dump(tmp_path / "data" / "cifar-10-batches-py" / "data_batch_1", {b"data": Evil()})
    with pytest.raises(G2GError, match="forbidden global"):
        load_dataset("cifar10", data_dir=tmp_path / "data", download=False)
    assert not marker.exists()


def test_local_tarball_is_verified_and_extracted(tmp_path, monkeypatch, tiny):
    ref = write_cifar100(tmp_path / "src")
    root = tmp_path / "data"
    digest = tarball_of(tmp_path / "src" / "cifar-100-python", root / "cifar-100-python.tar.gz")
    with pytest.raises(G2GError) as e:  # the official md5 does not match the test archive
        load_dataset("cifar100", data_dir=root, download=False)
    assert "cifar-100-python.tar.gz" in str(e.value) and digest in str(e.value)
    assert sources.TARBALL_MD5["cifar-100-python.tar.gz"] in str(e.value)
    assert not (root / "cifar-100-python").exists()
    monkeypatch.setitem(sources.TARBALL_MD5, "cifar-100-python.tar.gz", digest)
    ds = load_dataset("cifar100", data_dir=root, download=False)
    assert sorted(p.name for p in (root / "cifar-100-python").iterdir()) == ["meta", "test", "train"]
    assert ds.train_y.tolist() == ref["train"][1].tolist()


@pytest.mark.parametrize("bad_name", ["../escape", "/tmp/abs-escape", "cifar-100-python/../../escape"])
def test_tarball_path_traversal_rejected(tmp_path, monkeypatch, tiny, bad_name):
    write_cifar100(tmp_path / "src")
    root = tmp_path / "deep" / "data"
    members = {f"cifar-100-python/{p.name}": p.read_bytes() for p in (tmp_path / "src" / "cifar-100-python").iterdir()}
    digest = make_tarball(root / "cifar-100-python.tar.gz", {bad_name: b"boom", **members})
    monkeypatch.setitem(sources.TARBALL_MD5, "cifar-100-python.tar.gz", digest)
    with pytest.raises(G2GError, match="unsafe path"):
        load_dataset("cifar100", data_dir=root, download=False)
    assert not (tmp_path / "deep" / "escape").exists() and not (tmp_path / "escape").exists()
    assert not Path("/tmp/abs-escape").exists()
    assert leftovers(root / "cifar-100-python") == []


def test_tarball_missing_member_rejected(tmp_path, monkeypatch, tiny):
    root = tmp_path / "data"
    digest = make_tarball(root / "cifar-10-python.tar.gz", {"cifar-10-batches-py/data_batch_1": b"x"})
    monkeypatch.setitem(sources.TARBALL_MD5, "cifar-10-python.tar.gz", digest)
    with pytest.raises(G2GError, match="lacks cifar-10-batches-py/batches.meta"):
        load_dataset("cifar10", data_dir=root, download=False)
    assert leftovers(root / "cifar-10-batches-py") == []  # nothing half-extracted


# --------------------------------------------------------------------------------- lookup order


def test_lookup_order_for_idx(tmp_path, monkeypatch):
    given, env, xdg, system = (tmp_path / n for n in ("given", "env", "xdg", "system-fmnist"))
    for root in (given, env, xdg / "g2gnet", system):
        write_idx_set(root / "fashion-mnist" if root != system else root, seed=0)
    monkeypatch.setenv("G2G_DATA", str(env))

    def where() -> Path:
        return sources.locate("fashion-mnist", given if given.exists() else None, download=False)[
            "train-images-idx3-ubyte"
        ].parent

    assert where() == given / "fashion-mnist"  # data_dir beats $G2G_DATA
    given.rename(tmp_path / "gone")
    assert where() == env / "fashion-mnist"  # $G2G_DATA beats the cache
    monkeypatch.delenv("G2G_DATA")
    assert where() == xdg / "g2gnet" / "fashion-mnist"  # the cache beats system locations
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert where() == system  # (no XDG: ~/.cache/g2gnet, empty here)
    write_idx_set(tmp_path / "home" / ".cache" / "g2gnet" / "fashion-mnist", seed=0)
    assert where() == tmp_path / "home" / ".cache" / "g2gnet" / "fashion-mnist"


def test_lookup_order_for_cifar(tmp_path, monkeypatch, tiny):
    given, env, cache = tmp_path / "given", tmp_path / "env", tmp_path / "xdg" / "g2gnet"
    for shift, root in enumerate((given, env, cache)):
        write_cifar10(root, label_shift=shift)  # the labels tell which copy was loaded
    monkeypatch.setenv("G2G_DATA", str(env))

    def first_label(data_dir: Path | None) -> int:
        return int(load_dataset("cifar10", data_dir=data_dir, download=False).train_y[0])

    assert first_label(given) == 1  # batch 1, image 0: (1 + 0 + shift) % 10
    assert first_label(None) == 2
    monkeypatch.delenv("G2G_DATA")
    assert first_label(None) == 3


def test_not_found_says_where_and_what_to_do(tmp_path):
    with pytest.raises(G2GError) as e:
        load_dataset("fashion-mnist", data_dir=tmp_path / "nowhere", download=False)
    msg = str(e.value)
    assert "\n" not in msg
    for part in (str(tmp_path / "nowhere"), str(tmp_path / "xdg" / "g2gnet"), str(tmp_path / "system-fmnist"),
                 "dataset-fashion-mnist", "G2G_DATA", "--data-dir"):
        assert part in msg


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(G2GError, match="unknown dataset 'svhn'; valid: fashion-mnist, mnist, cifar10, cifar100"):
        load_dataset("svhn")
    with pytest.raises(G2GError, match="valid: fine, coarse"):
        load_dataset("cifar100", labels="medium")
    with pytest.raises(G2GError, match="only exists for cifar100"):
        load_dataset("cifar10", labels="coarse")


# ------------------------------------------------------------------------------------- download


def test_download_cifar100_tarball(tmp_path, monkeypatch, mirror, tiny):
    ref = write_cifar100(tmp_path / "src")
    digest = tarball_of(tmp_path / "src" / "cifar-100-python", mirror / "cifar-100-python.tar.gz")
    monkeypatch.setitem(sources.TARBALL_MD5, "cifar-100-python.tar.gz", digest)
    ds = load_dataset("cifar100", labels="coarse")  # no data_dir: into the user cache
    cache = tmp_path / "xdg" / "g2gnet"
    assert md5((cache / "cifar-100-python.tar.gz").read_bytes()) == digest
    assert sorted(p.name for p in (cache / "cifar-100-python").iterdir()) == ["meta", "test", "train"]
    assert ds.train_y.tolist() == ref["train"][2].tolist() and ds.num_classes == 20
    shutil.rmtree(cache)
    ds2 = load_dataset("cifar100", data_dir=tmp_path / "mine")  # a given data dir receives the download
    assert not cache.exists()
    assert (tmp_path / "mine" / "cifar-100-python" / "train").is_file()
    assert torch.equal(ds2.test_x, ds.test_x)


def test_download_fashion_mnist_gz(tmp_path, monkeypatch, mirror, tiny):
    arrays = write_idx_set(mirror, seed=7)
    trust_idx(monkeypatch, "fashion-mnist", arrays)
    for f in IDX_NAMES:
        monkeypatch.setitem(sources.GZ_MD5["fashion-mnist"], f, md5((mirror / f"{f}.gz").read_bytes()))
    ds = load_dataset("fashion-mnist")
    folder = tmp_path / "xdg" / "g2gnet" / "fashion-mnist"
    assert leftovers(folder) == sorted(f"{f}.gz" for f in IDX_NAMES)
    assert np.array_equal(ds.train_x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])


def test_corrupted_download_is_rejected_and_removed(tmp_path, monkeypatch, mirror, tiny):
    write_cifar100(tmp_path / "src")
    good = tarball_of(tmp_path / "src" / "cifar-100-python", mirror / "cifar-100-python.tar.gz")
    monkeypatch.setitem(sources.TARBALL_MD5, "cifar-100-python.tar.gz", good)
    served = mirror / "cifar-100-python.tar.gz"
    served.write_bytes(served.read_bytes()[:-100] + bytes(100))  # corrupted in transit
    bad = md5(served.read_bytes())
    with pytest.raises(G2GError) as e:
        load_dataset("cifar100", data_dir=tmp_path / "data")
    msg = str(e.value)
    assert "cifar-100-python.tar.gz" in msg and good in msg and bad in msg
    assert leftovers(tmp_path / "data") == []  # neither the file nor a .part temp is left
    served.unlink()
    with pytest.raises(G2GError, match="HTTP 404"):  # a missing file on the mirror
        load_dataset("cifar100", data_dir=tmp_path / "data")
    assert leftovers(tmp_path / "data") == []


def test_network_failure_is_a_clear_error(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("G2G_MIRROR", f"http://127.0.0.1:{port}")
    with pytest.raises(G2GError) as e:
        load_dataset("fashion-mnist", data_dir=tmp_path / "data")
    msg = str(e.value)
    assert f"127.0.0.1:{port}/train-images-idx3-ubyte.gz" in msg
    assert "looked in" in msg and "dataset-fashion-mnist" in msg and "G2G_DATA" in msg
    assert leftovers(tmp_path / "data") == ["fashion-mnist"]  # an empty folder, no partial files


def test_official_urls_and_mirror(monkeypatch):
    assert sources.url_for("fashion-mnist", "t10k-labels-idx1-ubyte.gz") == (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-labels-idx1-ubyte.gz"
    )
    assert sources.url_for("mnist", "x.gz") == "https://ossci-datasets.s3.amazonaws.com/mnist/x.gz"
    assert sources.url_for("cifar10", "cifar-10-python.tar.gz") == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    monkeypatch.setenv("G2G_MIRROR", "http://m.example/data/")
    assert sources.url_for("cifar100", "cifar-100-python.tar.gz") == "http://m.example/data/cifar-100-python.tar.gz"


# ------------------------------------------------------------------------- Dataset and splitting


def small_dataset(n: int = 20) -> Dataset:
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()
    y = torch.arange(n) % 5
    return Dataset("toy", x, y, x[:4].clone(), y[:4].clone(), 5, list("abcde"), (0.5,) * 3, (0.25,) * 3)


def test_split_validation():
    ds = small_dataset()
    train, val = split_validation(ds, 6, seed=1)
    ids_train, ids_val = train.train_x[:, 0, 0, 0].tolist(), val.train_x[:, 0, 0, 0].tolist()
    assert len(ids_train) == 14 and len(ids_val) == 6
    assert sorted(ids_train + ids_val) == list(range(20))  # disjoint, complete
    assert ids_train == sorted(ids_train) and ids_val == sorted(ids_val)  # file order kept
    assert val.train_y.tolist() == [i % 5 for i in ids_val]  # labels travel with their images
    assert torch.equal(train.test_x, ds.test_x) and torch.equal(val.test_y, ds.test_y)
    assert train.mean == pytest.approx((np.mean(ids_train) / 255,) * 3)  # from the kept part only
    assert val.mean == train.mean and val.std == train.std
    again, _ = split_validation(ds, 6, seed=1)
    other, _ = split_validation(ds, 6, seed=2)
    assert torch.equal(again.train_x, train.train_x) and not torch.equal(other.train_x, train.train_x)
    for bad in (0, 20, -1, 2.5):
        with pytest.raises(G2GError, match="0 < n_val < 20"):
            split_validation(ds, bad, seed=0)


def test_dataset_to_and_repr():
    ds = small_dataset()
    moved = ds.to("cpu")
    assert moved.train_x.dtype == torch.uint8 and moved.mean == ds.mean
    assert repr(ds) == "Dataset('toy', train=20, test=4, shape=3x4x4, classes=5, device=cpu)"


# ---------------------------------------------------------------------------- batches, augment


def test_normalize():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3).expand(1, 2, 1, 3)
    out = normalize(x, (0.2, 0.5), (0.5, 0.25))
    assert out.dtype == torch.float32
    assert out[0, 0, 0].tolist() == pytest.approx([-0.4, 0.0, 1.6])
    assert out[0, 1, 0].tolist() == pytest.approx([-2.0, -1.2, 2.0])


def test_batches_cover_everything_once():
    ds = small_dataset(23)
    b = Batches(ds.train_x, torch.arange(23), 5, ds.mean, ds.std, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert len(b) == 5
    seen = [yb for _, yb in b]
    assert [len(s) for s in seen] == [5, 5, 5, 5, 3]
    assert sorted(torch.cat(seen).tolist()) == list(range(23)) and torch.cat(seen).tolist() != list(range(23))
    for xb, yb in b:  # images travel with their labels, normalised
        assert xb.dtype == torch.float32 and xb.shape[1:] == (3, 4, 4)
        assert torch.allclose(xb[:, 0, 0, 0], (yb.float() / 255 - 0.5) / 0.25)
    dropped = Batches(ds.train_x, ds.train_y, 5, ds.mean, ds.std, shuffle=False, generator=None, drop_last=True)
    assert len(dropped) == 4 and [len(y) for _, y in dropped] == [5] * 4
    ordered = Batches(ds.train_x, torch.arange(23), 10, ds.mean, ds.std, shuffle=False, generator=None)
    assert torch.cat([y for _, y in ordered]).tolist() == list(range(23))


def test_batches_deterministic_per_seed():
    x = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8)

    def epoch(seed: int) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return [xb for xb, _ in Batches(x, torch.arange(40), 16, (0.5,) * 3, (0.5,) * 3, True, g, augment=True)]

    a, b, c = epoch(3), epoch(3), epoch(4)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not all(torch.equal(u, v) for u, v in zip(a, c))


def test_batches_reject_bad_input():
    x = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    with pytest.raises(G2GError, match="positive integer"):
        Batches(x, torch.zeros(4), 0, (0.0,), (1.0,), False, None)
    with pytest.raises(G2GError, match="uint8"):
        Batches(x.float(), torch.zeros(4), 2, (0.0,), (1.0,), False, None)


def test_crop_flip_matches_hand_computed():
    x = torch.randint(1, 256, (3, 2, 6, 5), dtype=torch.uint8)  # no zeros, so padding is visible
    dy, dx = torch.tensor([4, 0, 7]), torch.tensor([4, 0, 2])
    out = crop_flip(x, dy, dx, torch.tensor([False, False, True]), pad=4)
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(out[0], x[0])  # offset = pad, no flip: identity
    # Offset (0, 0): the top-left corner of the padded image; image pixel (i, j) lands at (i+4, j+4).
    expect = torch.zeros(2, 6, 5, dtype=torch.uint8)
    expect[:, 4:, 4:] = x[1, :, :2, :1]
    assert torch.equal(out[1], expect)
    # Offset (7, 2) then flip: rows 7..12 and columns 2..6 of the padded image, mirrored.
    padded = torch.zeros(2, 14, 13, dtype=torch.uint8)
    padded[:, 4:10, 4:9] = x[2]
    assert torch.equal(out[2], padded[:, 7:13, 2:7].flip(-1))


def test_crop_flip_every_offset_and_flip_equals_slicing():
    # Each (dy, dx, flip) of pad 2 once, on non-square multi-channel images: the batched windows
    # equal slicing each padded image on its own.
    pad, combos = 2, [(a, b, f) for a in range(5) for b in range(5) for f in (False, True)]
    x = torch.randint(1, 256, (len(combos), 3, 5, 7), dtype=torch.uint8)
    dy, dx, flip = (torch.tensor(v) for v in zip(*combos))
    out = crop_flip(x, dy, dx, flip, pad)
    for i, (a, b, f) in enumerate(combos):
        crop = torch.nn.functional.pad(x[i], (pad,) * 4)[:, a:a + 5, b:b + 7]
        assert torch.equal(out[i], crop.flip(-1) if f else crop)
    assert out.is_contiguous()
    assert crop_flip(x[:0], dy[:0], dx[:0], flip[:0], pad).shape == (0, 3, 5, 7)


@pytest.mark.parametrize("case", ["dy high", "dx high", "dx low", "dy flipped low", "short", "flip int", "pad"])
def test_crop_flip_refuses_what_would_read_a_neighbour(case):
    # An offset outside 0..2*pad indexes a neighbouring row or image of the strided view (silently
    # wrong pixels, not an IndexError): refused in one line, as are mis-shaped arguments.
    x = torch.arange(1, 2 * 3 * 4 * 4 + 1, dtype=torch.uint8).view(2, 3, 4, 4)
    dy, dx, flip, pad = torch.tensor([1, 0]), torch.tensor([0, 2]), torch.tensor([False, True]), 1
    if case == "dy high":
        dy = torch.tensor([3, 0])
    elif case == "dx high":
        dx = torch.tensor([0, 3])
    elif case == "dx low":
        dx = torch.tensor([-1, 0])
    elif case == "dy flipped low":
        dy = torch.tensor([0, -1])
    elif case == "short":
        dy = dy[:1]
    elif case == "flip int":
        flip = flip.long()
    else:
        pad = -1
    with pytest.raises(G2GError, match="crop_flip") as err:
        crop_flip(x, dy, dx, flip, pad)
    assert "\n" not in str(err.value)
    limits = crop_flip(x, torch.tensor([2, 0]), torch.tensor([0, 2]), torch.tensor([True, False]), 1)  # pass
    assert torch.equal(limits[1], torch.nn.functional.pad(x[1], (1,) * 4)[:, :4, 2:])


def test_random_crop_flip_is_per_sample_and_seeded():
    x = torch.randint(1, 256, (64, 3, 32, 32), dtype=torch.uint8)
    a = random_crop_flip(x, torch.Generator().manual_seed(0))
    b = random_crop_flip(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    zeros_per_image = (a == 0).flatten(1).sum(1)  # the padding visible in each crop
    assert len(set(zeros_per_image.tolist())) > 5  # offsets differ between samples
    only_flips = random_crop_flip(x, torch.Generator().manual_seed(1), pad=0)  # pad 0: crop is identity
    flipped = [torch.equal(only_flips[i], x[i].flip(-1)) for i in range(64)]
    assert all(f or torch.equal(only_flips[i], x[i]) for i, f in enumerate(flipped))
    assert 16 <= sum(flipped) <= 48  # p = 0.5


# ------------------------------------------------------------------------------------ real data


@pytest.mark.skipif(not (REAL_FMNIST / "train-images-idx3-ubyte.gz").is_file(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.setattr(sources, "SYSTEM_DIRS", {"fashion-mnist": (REAL_FMNIST,)})
    ds = load_dataset("fashion-mnist", download=False)  # found in the system location, md5-checked
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.train_y).tolist() == [6000] * 10
    assert torch.bincount(ds.test_y).tolist() == [1000] * 10
    assert ds.mean == pytest.approx((0.2860,), abs=1e-4) and ds.std == pytest.approx((0.3530,), abs=1e-4)


@pytest.mark.skipif(
    not (REAL_G2G_DATA and (Path(REAL_G2G_DATA) / "cifar-10-batches-py" / "data_batch_1").is_file()),
    reason="set G2G_DATA to a directory with the genuine cifar-10-batches-py",
)
def test_real_cifar10():
    ds = load_dataset("cifar10", data_dir=REAL_G2G_DATA, download=False)
    assert ds.train_x.shape == (50000, 3, 32, 32) and ds.test_x.shape == (10000, 3, 32, 32)
    assert torch.bincount(ds.train_y).tolist() == [5000] * 10
    assert torch.bincount(ds.test_y).tolist() == [1000] * 10
    assert ds.mean == pytest.approx((0.4914, 0.4822, 0.4465), abs=1e-4)
    assert ds.std == pytest.approx((0.2470, 0.2435, 0.2616), abs=1e-4)
