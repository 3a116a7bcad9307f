"""Datasets in memory as uint8 tensors, their official file formats and sources, and batching.

See SPEC §4. Modules: ``formats`` (readers), ``sources`` (where files are, lookup order, download),
``checksums``, ``archive``, ``download``, ``datasets`` (registry, ``Dataset``), ``augment``,
``loader`` (``Batches``, ``normalize``).
"""

from g2gnet.data.datasets import DATASETS, Dataset, load_dataset, split_validation
from g2gnet.data.loader import Batches, normalize

__all__ = ["DATASETS", "Dataset", "load_dataset", "split_validation", "Batches", "normalize"]
