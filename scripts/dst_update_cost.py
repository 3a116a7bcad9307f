"""Cost of one DST update on the default G2G-mixer (784-3x1024-10), against a training step.

Times, in one process: ordinary training steps without DST, the recording step before an update
(hooks active), the update itself (scores, top-k, mask + optimizer-state changes) and the first
step after it (which rebuilds the fast path's plans). Prints the overhead per `interval` steps.
usage: python scripts/dst_update_cost.py [PRUNE:GROW] [INTERVAL]
"""

import statistics
import sys
import time

import torch

from g2gnet import build_model
from g2gnet.dst import DynamicSparsity
from g2gnet.optim import adam
from g2gnet.train import train_step as one_step


def main(rule: str = "magnitude:hebbian", interval: int = 1000, repeats: int = 5) -> None:
    prune, grow = rule.split(":")
    model = build_model("g2g-mixer", 784, 10, seed=0)
    opt = adam(model.parameters(), lr=1e-3, weight_decay=1e-4)  # the training loop's optimizer
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(256, 1, 28, 28, generator=g), torch.randint(0, 10, (256,), generator=g)

    def train_step() -> None:
        one_step(model, opt, x, y)

    for _ in range(5):
        train_step()
    plain = []
    for _ in range(20):
        t = time.perf_counter()
        train_step()
        plain.append(time.perf_counter() - t)
    step_s = statistics.median(plain)

    # interval=2 puts an update on every second step: step 1 records, step 2 updates.
    dst = DynamicSparsity(model, opt, prune=prune, grow=grow, interval=2, fraction=0.1)
    record, update, after = [], [], []
    for _ in range(repeats):
        t = time.perf_counter(); train_step(); dst.step(); record.append(time.perf_counter() - t)
        t = time.perf_counter(); train_step(); dst.step(); update.append(time.perf_counter() - t)
        t = time.perf_counter(); train_step(); after.append(time.perf_counter() - t)
        dst.step_count -= 1  # keep the schedule aligned: the next step records again
        dst._update_recording()
    extra = (statistics.median(record) - step_s) + (statistics.median(update) - step_s) + \
            (statistics.median(after) - step_s)
    print(f"threads {torch.get_num_threads()}, rule {rule}: training step {1e3 * step_s:.1f} ms; "
          f"recording step +{1e3 * (statistics.median(record) - step_s):.1f} ms, update step "
          f"+{1e3 * (statistics.median(update) - step_s):.1f} ms, first step after "
          f"+{1e3 * (statistics.median(after) - step_s):.1f} ms")
    print(f"overhead per {interval} steps: {1e3 * extra:.0f} ms = {100 * extra / (interval * step_s):.2f}% "
          f"of {interval * step_s:.1f} s of training")


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["magnitude:hebbian"]), *(int(a) for a in sys.argv[2:3]))
