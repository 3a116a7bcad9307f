"""What a run shows while it trains: tqdm bars on a terminal, else one line per epoch (a log file
or a pipe gets a line it can keep, not bar redraws), or nothing.

The line: ``epoch 3/20: train loss 0.4521, train acc 84.12%, test acc 85.03%[, val acc 84.90%],
9.7 s, ETA 2m45s`` on stderr (stdout keeps the result line).
"""

from __future__ import annotations

import sys
from typing import Literal

from .records import EpochRecord

try:  # progress bars are a nicety, never a requirement
    from tqdm import tqdm
except ImportError:  # pragma: no cover
    tqdm = None

Progress = Literal["bars", "lines", "off"]


def choose_mode(progress: Progress | bool | None, main: bool) -> Progress:
    """The mode for ``progress`` (None: bars on a terminal, lines otherwise; only the main process
    of a data-parallel run shows any). ``True``/``False`` mean bars/off, as before."""
    if not main:
        return "off"
    if progress is None:
        return "bars" if sys.stderr.isatty() else "lines"
    if isinstance(progress, bool):
        return "bars" if progress else "off"
    if progress not in ("bars", "lines", "off"):
        raise ValueError(f"progress must be bars, lines or off, got {progress!r}")
    return progress


def bar(iterable, total: int, desc: str, mode: Progress, leave: bool = False):
    if mode != "bars" or tqdm is None:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=leave, dynamic_ncols=True)


def format_duration(seconds: float) -> str:
    m = int(seconds // 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{int(seconds % 60):02d}s"


def epoch_line(record: EpochRecord, epochs: int, seconds: float, eta: float) -> str:
    """One epoch as one line; ``seconds``: the epoch with its evaluation, ``eta``: to the end."""
    parts = [f"train loss {record.train_loss:.4f}", f"train acc {100 * record.train_acc:.2f}%",
             f"test acc {100 * record.test_acc:.2f}%"]
    if record.val_acc is not None:
        parts.append(f"val acc {100 * record.val_acc:.2f}%")
    return f"epoch {record.epoch}/{epochs}: {', '.join(parts)}, {seconds:.1f} s, ETA {format_duration(eta)}"


def show_epoch(record: EpochRecord, epochs: int, seconds: float, eta: float, mode: Progress) -> None:
    if mode == "lines":
        print(epoch_line(record, epochs, seconds, eta), file=sys.stderr, flush=True)
