"""Paired timings and the one statistic of every ``g2g bench`` row.

Shared machines make single timings meaningless, so every repeat times the dense and the G2G
side back to back, alternating which goes first, and a row shows the *median repeat*: the repeat
whose ratio dense time / G2G time is the median over the repeats, with that repeat's two times.
The speed-up shown is therefore always the ratio of the times shown (a table that printed
per-side medians beside a median of ratios once read ``2.101 | 2.264 | 1.29x``); the spread is
the ratio's min-max over the repeats.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence

import torch

STATISTIC = ("each repeat times the dense and the G2G side back to back, alternating which goes first; "
             "a row is the median repeat (its ratio dense time / G2G time is the median over the repeats, "
             "the lower median for an even count) with that repeat's two times, so speed-up = dense / G2G "
             "on every row; min-max: the ratio's range over the repeats")


def time_interleaved(calls: dict[str, Callable[[], None]], repeats: int, warmup: int = 0, *, per_repeat: int = 1,
                     before: Callable[[str], None] | None = None, clock: Callable[[], float] = time.perf_counter,
                     sync: Callable[[], None] = lambda: None) -> dict[str, list[float]]:
    """Milliseconds per call of each of ``calls`` in each repeat (``per_repeat`` calls timed
    together). The sides run in turn, each repeat starting one side later than the last, so a drift
    of a shared machine hits all alike; with three or more sides every other round of rotations runs
    in reverse order, so a side does not always follow the same neighbour (whose leftovers in the
    caches would favour or hurt it). With two sides: the first goes first in even repeats, the
    second in odd ones. ``warmup`` untimed calls of each come before. ``before(name)`` runs
    untimed before each of a side's warm-up calls and timed blocks (an A/B's switch between builds
    or code paths). The benchmarks' A/Bs (``benchmarks/``) and every ``g2g bench`` row time through
    this."""
    if not calls:
        raise ValueError("time_interleaved needs at least one side")
    for _ in range(warmup):
        for name, call in calls.items():
            if before is not None:
                before(name)
            call()
    names = list(calls)
    times: dict[str, list[float]] = {n: [] for n in names}
    n = len(names)
    for i in range(repeats):
        k = i % n
        order = names[k:] + names[:k]
        if n >= 3 and (i // n) % 2:
            order.reverse()
        for name in order:
            if before is not None:
                before(name)
            sync()
            start = clock()
            for _ in range(per_repeat):
                calls[name]()
            sync()
            times[name].append((clock() - start) * 1e3 / per_repeat)
    return times


def time_pairs(calls: dict[str, Callable[[], None]], repeats: int, warmup: int = 0, **kwargs) -> dict[str, list[float]]:
    """``time_interleaved`` of exactly two sides (a bench row: dense and G2G)."""
    if len(calls) != 2:
        raise ValueError(f"time_pairs compares two sides, got {list(calls)}")
    return time_interleaved(calls, repeats, warmup, **kwargs)


def ratios(times: dict[str, list[float]], a: str, b: str) -> list[float]:
    """a's time over b's, repeat by repeat (> 1: b is faster)."""
    return [p / q for p, q in zip(times[a], times[b])]


def compare(label: str, times: dict[str, list[float]], unit: str = "ms") -> str:
    """One line of an A/B: the median time of each side, then the first side's time over each
    other's, repeat by repeat: median [min-max]."""
    base = next(iter(times))
    line = f"{label}: " + "  ".join(f"{n} {statistics.median(v):.3f}{unit}" for n, v in times.items())
    for n in times:
        if n != base:
            r = ratios(times, base, n)
            line += f"  {base}/{n} {statistics.median(r):.3f} [{min(r):.2f}-{max(r):.2f}]"
    return line


def median_repeat(dense: Sequence[float], g2g: Sequence[float]) -> dict[str, float]:
    """The statistic of every row (``STATISTIC``): the repeat whose ratio dense / g2g is the median
    (the lower median for an even count), its two times, and the ratio's min and max."""
    if not dense or len(dense) != len(g2g):
        raise ValueError(f"need the same number (>= 1) of times per side, got {len(dense)} and {len(g2g)}")
    if min(*dense, *g2g) <= 0:
        raise ValueError("times must be positive")
    ratios = [d / g for d, g in zip(dense, g2g)]
    k = sorted(range(len(ratios)), key=ratios.__getitem__)[(len(ratios) - 1) // 2]
    return {"dense": dense[k], "g2g": g2g[k], "ratio": dense[k] / g2g[k], "ratio_min": min(ratios),
            "ratio_max": max(ratios)}


def sync_for(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def format_ms(v: float) -> str:
    """Four significant digits, never in exponent form (0.01234, 1.234, 1234)."""
    return f"{v:.{max(0, 3 - math.floor(math.log10(v)))}f}"
