"""Batching by index over in-memory uint8 tensors, with normalisation (and optional augmentation)
done per batch on the tensors' own device. Replaces a DataLoader: there are no files or workers,
just slices of a permutation (SPEC §4).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch

from g2gnet.data.augment import random_crop_flip
from g2gnet.errors import G2GError


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 images [B, C, H, W] -> float32 ``(x / 255 - mean) / std`` per channel."""
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return x.to(torch.float32).div_(255.0).sub_(m).div_(s)


class Batches:
    """Iterable of ``(x float32 [B, C, H, W] normalised, y)`` over index slices.

    With ``shuffle`` each iteration (epoch) draws a fresh permutation from ``generator``; with
    ``augment`` each batch is randomly cropped and flipped with numbers from the same generator, so
    one seed fixes data order and augmentation. ``len()`` is the number of batches.
    """

    def __init__(
        self,
        x_uint8: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        shuffle: bool,
        generator: torch.Generator | None,
        augment: bool = False,
        drop_last: bool = False,
    ) -> None:
        if x_uint8.dtype != torch.uint8 or x_uint8.dim() != 4:
            raise G2GError(f"Batches expects uint8 images [N, C, H, W], got {x_uint8.dtype} {tuple(x_uint8.shape)}")
        if len(x_uint8) != len(y):
            raise G2GError(f"Batches: {len(x_uint8)} images but {len(y)} labels")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise G2GError(f"batch size must be a positive integer, got {batch_size!r}")
        self.x, self.y = x_uint8, y
        self.batch_size = batch_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.shuffle, self.generator = shuffle, generator
        self.augment, self.drop_last = augment, drop_last

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, bs = len(self.y), self.batch_size
        perm = None
        if self.shuffle:
            dev = self.generator.device if self.generator is not None else torch.device("cpu")
            perm = torch.randperm(n, generator=self.generator, device=dev).to(self.x.device)
        for i in range(len(self)):
            if perm is None:  # in order: a slice is a view, no gather needed
                xb, yb = self.x[i * bs : (i + 1) * bs], self.y[i * bs : (i + 1) * bs]
            else:
                idx = perm[i * bs : (i + 1) * bs]
                # (index_select copies whole images; x[idx] went element by element: 5x slower on CIFAR)
                xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
            if self.augment:
                xb = random_crop_flip(xb, self.generator)
            yield normalize(xb, self.mean, self.std), yb
