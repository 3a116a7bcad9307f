"""CIFAR augmentation: the batch's crops copied by one index_select over a strided view
(``data.augment.crop_flip``) against the code before (advanced indexing with an index per pixel,
kept below), on 256-image uint8 batches, interleaved in one process; then the seconds of one epoch
of the training loader (``Batches``: shuffle, gather, augmentation, normalisation) per dataset,
CIFAR-10's with either crop in turn; with --epochs, CIFAR-10 training epochs of g2g-mixer and
dense as ``g2g bench --epoch`` times them (``epoch_speed.time_epoch``), with either crop, in turn:
the speed-up with each.

    python benchmarks/augment_ab.py [--repeats 11] [--data-dir DIR] [--epochs N]
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from g2gnet.bench_config import BenchConfig
from g2gnet.config import Config
from g2gnet.data import Batches
from g2gnet.data import augment
from g2gnet.data.augment import crop_flip
from g2gnet.epoch_speed import dense_baseline, time_epoch
from g2gnet.timing import compare, time_interleaved
from g2gnet.train import check_config, run_data

parser = argparse.ArgumentParser()
parser.add_argument("--repeats", type=int, default=11, help="interleaved repeats")
parser.add_argument("--data-dir", default=None, help="dataset root (default: $G2G_DATA, cache, system)")
parser.add_argument("--epochs", type=int, default=0, help="repeats of the CIFAR-10 epoch pairs (0: none)")
args = parser.parse_args()
torch.set_num_threads(2)


def crop_flip_before(x, dy, dx, flip, pad):
    """crop_flip as it was before 65515d5."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = dy[:, None] + torch.arange(h)
    cols = dx[:, None] + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    return padded[torch.arange(b)[:, None, None, None], torch.arange(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


g = torch.Generator().manual_seed(0)
x = torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8, generator=g)
dy, dx = torch.randint(0, 9, (256,), generator=g), torch.randint(0, 9, (256,), generator=g)
flip = torch.rand(256, generator=g) < 0.5
assert torch.equal(crop_flip(x, dy, dx, flip, 4), crop_flip_before(x, dy, dx, flip, 4))
calls = {"before": lambda: crop_flip_before(x, dy, dx, flip, 4), "now": lambda: crop_flip(x, dy, dx, flip, 4)}
print(compare("crop and flip, 256 x 3 x 32 x 32 uint8", time_interleaved(calls, args.repeats, 3, per_repeat=20)))

for name, crops in (("fashion-mnist", {"now": crop_flip}), ("cifar10", {"before": crop_flip_before, "now": crop_flip})):
    cfg = check_config(Config().replace(data={"dataset": name}))
    ds = run_data(cfg, args.data_dir)[0]
    seconds = {side: [] for side in crops}
    for r in range(3):
        for side, crop in crops.items():
            augment.crop_flip = crop  # what random_crop_flip calls
            batches = Batches(ds.train_x, ds.train_y, cfg.train.batch_size, ds.mean, ds.std, shuffle=True,
                              generator=torch.Generator().manual_seed(r), augment=bool(cfg.data.augment))
            start = time.perf_counter()
            for _ in batches:
                pass
            seconds[side].append(time.perf_counter() - start)
    augment.crop_flip = crop_flip
    for side, s in seconds.items():
        print(f"{name}: one epoch of the training loader (augment {bool(cfg.data.augment)}, {len(batches)} batches, "
              f"crop {side}): {statistics.median(s):.3f} s [{min(s):.3f}-{max(s):.3f}] over 3 epochs")

if args.epochs:
    cfg = check_config(Config().replace(data={"dataset": "cifar10"}, model={"name": "g2g-mixer"}))
    ds = run_data(cfg, args.data_dir)[0]
    bench = BenchConfig(threads=2)
    sides = {"dense": dense_baseline(cfg), "g2g": cfg}
    seconds = {(crop, side): [] for crop in ("before", "now") for side in sides}
    for r in range(args.epochs):
        order = list(seconds) if r % 2 == 0 else list(reversed(seconds))
        for crop, side in order:
            augment.crop_flip = crop_flip_before if crop == "before" else crop_flip
            seconds[crop, side].append(time_epoch(sides[side], ds, bench, r))
    augment.crop_flip = crop_flip
    for crop in ("before", "now"):
        d, g = seconds[crop, "dense"], seconds[crop, "g2g"]
        ratios = [a / b for a, b in zip(d, g)]
        print(f"cifar10 epoch, crop {crop}: dense {statistics.median(d):.2f} s, g2g-mixer {statistics.median(g):.2f} s, "
              f"speed-up {statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}] over {args.epochs} repeats")
