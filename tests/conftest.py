"""Shared fixtures: a tiny, learnable Fashion-MNIST in the official IDX format."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from g2gnet.data import DATASETS
from g2gnet.data import sources


def _idx(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


@pytest.fixture
def tiny_fmnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data dir with 512 train / 128 test 28x28 images whose class is a bright 7x7 patch position.

    The registry sizes and md5 table are patched to these files, and no other location is searched.
    """
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 512), ("t10k", 128)):
        y = np.arange(n) % 10
        x = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
        for i, c in enumerate(y):
            r, col = divmod(int(c), 4)
            x[i, 7 * r : 7 * r + 7, 7 * col : 7 * col + 7] += 150
        arrays[f"{split}-images-idx3-ubyte"] = x
        arrays[f"{split}-labels-idx1-ubyte"] = y.astype(np.uint8)
    root = tmp_path / "data"
    (root / "fashion-mnist").mkdir(parents=True)
    for name, arr in arrays.items():
        content = _idx(arr)
        (root / "fashion-mnist" / f"{name}.gz").write_bytes(gzip.compress(content))
        monkeypatch.setitem(sources.IDX_MD5["fashion-mnist"], name, hashlib.md5(content).hexdigest())
    monkeypatch.setitem(DATASETS, "fashion-mnist",
                        dataclasses.replace(DATASETS["fashion-mnist"], train_size=512, test_size=128))
    monkeypatch.setattr(sources, "SYSTEM_DIRS", {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("G2G_DATA", raising=False)
    monkeypatch.setenv("G2G_MIRROR", "http://127.0.0.1:9/")  # a closed port: never the internet
    return root
