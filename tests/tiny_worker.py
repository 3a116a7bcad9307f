"""``g2g`` for the sweep tests' worker processes: the tiny Fashion-MNIST of ``conftest`` is only
valid once the registry knows its sizes and checksums, which a fresh process has to be told again.

usage: python tests/tiny_worker.py DATA_ROOT g2g-arguments...
"""

import dataclasses
import gzip
import hashlib
import sys
from pathlib import Path

from g2gnet import sweep
from g2gnet.cli import main
from g2gnet.data import DATASETS, sources


def patch_tiny(root: Path) -> None:
    for f in (root / "fashion-mnist").glob("*.gz"):
        sources.IDX_MD5["fashion-mnist"][f.name[:-3]] = hashlib.md5(gzip.decompress(f.read_bytes())).hexdigest()
    DATASETS["fashion-mnist"] = dataclasses.replace(DATASETS["fashion-mnist"], train_size=512, test_size=128)
    sources.SYSTEM_DIRS.clear()


if __name__ == "__main__":
    patch_tiny(Path(sys.argv[1]))
    sweep.G2G = (sys.executable, __file__, sys.argv[1])  # a sweep's workers are tiny workers too
    sys.exit(main(sys.argv[2:]))
