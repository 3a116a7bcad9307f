"""Write a SYNTHETIC CIFAR-100 in the official python format (cifar-100-python/{train,test,meta}).

Genuine CIFAR-100 images are not available on the project's offline machines; this proves the
full `g2g train --dataset cifar100` path (reader, checks, model, loop) on files of the official
layout and size: 50,000 / 10,000 rows of 3072 uint8, 100 fine and 20 coarse labels. The pixels are
random, so accuracy is chance: never report a number from it.

usage: python scripts/make_synthetic_cifar100.py DIR     (then: g2g train --dataset cifar100 --data-dir DIR)
"""

import pickle
import sys
from pathlib import Path

import numpy as np


def main(root: Path) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 50_000), ("test", 10_000)):
        fine = (np.arange(n) % 100).tolist()
        record = {
            b"filenames": [f"synthetic_{i}.png".encode() for i in range(n)],
            b"batch_label": f"{split}ing batch 1 of 1".encode(),
            b"fine_labels": fine,
            b"coarse_labels": [f // 5 for f in fine],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        }
        (folder / split).write_bytes(pickle.dumps(record, protocol=2))
    meta = {
        b"fine_label_names": [f"fine_{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse_{i}".encode() for i in range(20)],
    }
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    print(f"wrote synthetic CIFAR-100 to {folder}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
