"""The dataset registry, the in-memory ``Dataset`` and ``load_dataset`` / ``split_validation``.

Datasets are small (at most 50000 x 3 x 32 x 32 bytes), so they are loaded once into memory as
uint8 tensors (moved to the GPU as a whole with ``.to``) and batched by index (SPEC §4).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from g2gnet.data import formats, sources
from g2gnet.data.checksums import md5_bytes, verify_md5
from g2gnet.errors import G2GError, lookup

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
MNIST_CLASSES = [str(d) for d in range(10)]
LABEL_SETS = ("fine", "coarse")


@dataclass
class Dataset:
    """A whole dataset in memory.

    ``train_x``/``test_x`` are uint8 [N, C, H, W]; ``train_y``/``test_y`` int64 [N]. ``mean`` and
    ``std`` are per-channel statistics of ``train_x`` on a 0..1 scale, for ``normalize``.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to(self, device: torch.device | str) -> Dataset:
        """A copy with all four tensors on ``device`` (uint8 stays uint8: 4x less traffic)."""
        return dataclasses.replace(
            self,
            train_x=self.train_x.to(device),
            train_y=self.train_y.to(device),
            test_x=self.test_x.to(device),
            test_y=self.test_y.to(device),
        )

    def __repr__(self) -> str:  # the default repr would print the tensors
        shape = "x".join(map(str, self.train_x.shape[1:]))
        return (
            f"Dataset({self.name!r}, train={len(self.train_y)}, test={len(self.test_y)}, shape={shape}, "
            f"classes={self.num_classes}, device={self.train_x.device})"
        )


class Arrays(NamedTuple):
    """What a reader returns: numpy arrays straight from the files, plus class names."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: list[str]


@dataclass(frozen=True)
class DatasetInfo:
    """Registry entry. The sizes are checked on load so a partial copy is an error, not a dataset."""

    name: str
    shape: tuple[int, int, int]  # C, H, W
    num_classes: int  # of the fine labels, the label set every dataset has
    train_size: int
    test_size: int
    read: Callable[[DatasetInfo, dict[str, Path], str], Arrays]
    epochs: int  # default training length (SPEC §5)
    augment: bool  # random crop + flip by default
    coarse_classes: int | None = None  # CIFAR-100's superclasses; None: no coarse label set

    def classes_of(self, labels: str) -> int:
        """The number of classes of label set ``labels`` (a G2GError if the dataset lacks it)."""
        check_labels(self.name, labels)
        return self.num_classes if labels == "fine" else self.coarse_classes


def _read_idx_pair(info: DatasetInfo, files: dict[str, Path], split: str) -> tuple[np.ndarray, np.ndarray]:
    expected = info.train_size if split == "train" else info.test_size
    arrays = []
    for kind, ndim in (("images", 3), ("labels", 1)):
        stem = f"{split}-{kind}-idx{ndim}-ubyte"
        path = files[stem]
        data = formats.idx_bytes(path)
        arr = formats.parse_idx(data, path, ndim)  # structure first: "truncated" beats "md5 mismatch"
        verify_md5(md5_bytes(data), sources.IDX_MD5[info.name][stem], path)
        if len(arr) != expected:
            raise G2GError(f"{path} has {len(arr)} items, expected {expected}")
        arrays.append(arr)
    x, y = arrays
    if x.shape[1:] != info.shape[1:]:
        raise G2GError(f"{files[f'{split}-images-idx3-ubyte']}: images are {x.shape[1:]}, expected {info.shape[1:]}")
    y = y.astype(np.int64)
    formats.check_labels(y, info.num_classes, files[f"{split}-labels-idx1-ubyte"])
    return x[:, None], y  # add the channel dim: [N, 1, 28, 28]


def _read_idx(info: DatasetInfo, files: dict[str, Path], labels: str) -> Arrays:
    classes = FASHION_MNIST_CLASSES if info.name == "fashion-mnist" else MNIST_CLASSES
    return Arrays(*_read_idx_pair(info, files, "train"), *_read_idx_pair(info, files, "t10k"), list(classes))


def _read_cifar10(info: DatasetInfo, files: dict[str, Path], labels: str) -> Arrays:
    batches = [f"data_batch_{i}" for i in range(1, 6)]
    per_batch = info.train_size // len(batches)
    train = [formats.read_cifar_batch(files[b], b"labels", 10, per_batch) for b in batches]
    test_x, test_y = formats.read_cifar_batch(files["test_batch"], b"labels", 10, info.test_size)
    classes = formats.read_cifar_meta(files["batches.meta"], b"label_names", 10)
    return Arrays(
        np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), test_x, test_y, classes
    )


def _read_cifar100(info: DatasetInfo, files: dict[str, Path], labels: str) -> Arrays:
    key, n = f"{labels}_labels".encode(), info.classes_of(labels)
    train_x, train_y = formats.read_cifar_batch(files["train"], key, n, info.train_size)
    test_x, test_y = formats.read_cifar_batch(files["test"], key, n, info.test_size)
    classes = formats.read_cifar_meta(files["meta"], f"{labels}_label_names".encode(), n)
    return Arrays(train_x, train_y, test_x, test_y, classes)


DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo("fashion-mnist", (1, 28, 28), 10, 60000, 10000, _read_idx, 20, False),
    "mnist": DatasetInfo("mnist", (1, 28, 28), 10, 60000, 10000, _read_idx, 20, False),
    "cifar10": DatasetInfo("cifar10", (3, 32, 32), 10, 50000, 10000, _read_cifar10, 30, True),
    "cifar100": DatasetInfo("cifar100", (3, 32, 32), 100, 50000, 10000, _read_cifar100, 40, True,
                            coarse_classes=20),
}


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry, or a ``G2GError`` listing the valid names."""
    return lookup(DATASETS, name, "dataset")


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images [N, C, H, W] on a 0..1 scale.

    Accumulated in float64 over chunks: exact enough for 150M values without a float64 copy of
    the whole set.
    """
    c = x.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk].to("cpu", torch.float64).div_(255.0)
        s += part.sum(dim=(0, 2, 3))
        s2 += part.square_().sum(dim=(0, 2, 3))
    count = x.numel() // c
    mean = s / count
    std = (s2 / count - mean.square()).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _tensor(a: np.ndarray) -> torch.Tensor:
    # Arrays parsed from bytes are read-only views; torch wants writable memory. Copies only then.
    return torch.from_numpy(np.require(a, requirements=["C_CONTIGUOUS", "WRITEABLE"]))


def check_labels(name: str, labels: str) -> None:
    """A label set the dataset has (only a dataset with ``coarse_classes``, CIFAR-100, has "coarse")."""
    if labels not in LABEL_SETS:
        raise G2GError(f"unknown label set {labels!r}; valid: {', '.join(LABEL_SETS)}")
    if labels == "coarse" and dataset_info(name).coarse_classes is None:
        with_coarse = [n for n, info in DATASETS.items() if info.coarse_classes is not None]
        raise G2GError(f"labels='coarse' only exists for {', '.join(with_coarse)}, not {name}")


def load_dataset(
    name: str, data_dir: str | Path | None = None, download: bool = True, labels: str = "fine"
) -> Dataset:
    """Find (or download) and load a dataset into memory as uint8 tensors on the CPU.

    ``labels`` selects CIFAR-100's fine or coarse classes (``DatasetInfo.classes_of``); other
    datasets only have "fine".
    """
    info = dataset_info(name)
    check_labels(name, labels)
    files = sources.locate(name, data_dir, download)
    a = info.read(info, files, labels)
    train_x = _tensor(a.train_x)
    mean, std = channel_stats(train_x)
    return Dataset(
        name=name,
        train_x=train_x,
        train_y=_tensor(a.train_y),
        test_x=_tensor(a.test_x),
        test_y=_tensor(a.test_y),
        num_classes=len(a.classes),
        classes=a.classes,
        mean=mean,
        std=std,
    )


def split_validation(ds: Dataset, n_val: int, seed: int) -> tuple[Dataset, Dataset]:
    """Split the training set into ``(train, val)`` with ``n_val`` seeded-random validation images.

    The split is "of the training set": ``train.train_x/train_y`` are the remaining images and
    ``val.train_x/train_y`` the held-out ones; both keep the real test set in ``test_x/test_y``.
    ``mean``/``std`` of both are recomputed from the remaining images only, so nothing about the
    validation images leaks into normalisation, and validation uses the training statistics.
    Both parts keep the file order (the indices are sorted).
    """
    n = len(ds.train_y)
    if isinstance(n_val, bool) or not isinstance(n_val, int) or not 0 < n_val < n:
        raise G2GError(f"validation size must be an integer with 0 < n_val < {n} (training set size), got {n_val!r}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(ds.train_y.device)
    val_idx, keep_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
    train_x, train_y = ds.train_x[keep_idx], ds.train_y[keep_idx]
    mean, std = channel_stats(train_x)
    train = dataclasses.replace(ds, train_x=train_x, train_y=train_y, mean=mean, std=std)
    val = dataclasses.replace(train, train_x=ds.train_x[val_idx], train_y=ds.train_y[val_idx])
    return train, val
