"""Measured epoch speed-ups beside a report's rows, and the accuracy-speed Pareto front.

``g2g bench`` writes an epoch-speed file (``{"kind": "epoch-speed", "baseline": "dense", "rows":
[{"label", "config", "seconds", "ratio", "ratio_median", "ratio_min", "ratio_max"}]}``): each row
times whole training epochs of one resolved configuration (``config``: ``Config.to_dict()``),
interleaved with the baseline in one process; ``ratio`` is baseline seconds / this row's seconds
per repeat, so above 1 is faster. Rows are matched to report cells by configuration identity
(``keys.identity``: everything but seed, device and threads).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..errors import G2GError
from ..runs import read_json
from .keys import Identity, identity, identity_key

KIND = "epoch-speed"


@dataclass(frozen=True)
class EpochSpeed:
    """One timed configuration: per-repeat seconds of an epoch, and speed-ups over the baseline."""

    label: str
    identity: Identity
    seconds: tuple[float, ...]
    median: float  # speed-up: baseline seconds / these seconds
    low: float
    high: float
    baseline_seconds: tuple[float, ...] = ()  # the baseline's epochs timed beside these (older files: none)

    @property
    def seconds_per_epoch(self) -> float:
        """The median over repeats of one epoch's seconds."""
        return statistics.median(self.seconds)


@dataclass(frozen=True)
class EpochSpeeds:
    path: Path
    baseline: str
    env: dict
    rows: tuple[EpochSpeed, ...]

    def find(self, ident: Identity, ignore: tuple[str, ...] = ()) -> EpochSpeed | None:
        """The row timing the configuration ``ident`` (compared without the keys in ``ignore``,
        e.g. ``train.epochs``: an epoch costs the same in a longer schedule)."""
        want = identity_key({k: v for k, v in ident.items() if k not in ignore})
        hits = [r for r in self.rows if identity_key({k: v for k, v in r.identity.items() if k not in ignore}) == want]
        return hits[0] if hits else None

    def baseline_seconds_per_epoch(self, model_hidden) -> float | None:
        """The baseline's (dense's) seconds per epoch at these hidden widths: the median of its
        epochs timed beside every configuration of those widths, or None."""
        pooled = [t for r in self.rows if r.identity.get("model.hidden") == model_hidden for t in r.baseline_seconds]
        return statistics.median(pooled) if pooled else None


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise G2GError(f"{what} is {value!r}, expected a positive number")
    return float(value)


def read_epoch_speeds(path: Path) -> EpochSpeeds | None:
    """The epoch-speed file at ``path``; None where it does not exist yet."""
    if not path.exists():
        return None
    data = read_json(path)
    if not isinstance(data, dict) or data.get("kind") != KIND or not isinstance(data.get("rows"), list):
        raise G2GError(f"{path} is not a g2g bench epoch-speed file (kind {KIND!r} with rows)")
    rows = []
    for i, row in enumerate(data["rows"]):
        where = f"{path}, row {i}"
        if not isinstance(row, dict) or not isinstance(row.get("config"), dict):
            raise G2GError(f"{where}: no config")
        try:
            ident = identity(Config.from_dict(row["config"]))
        except G2GError as e:
            raise G2GError(f"{where}: {e}") from None
        seconds = row.get("seconds")
        if not isinstance(seconds, list) or not seconds:
            raise G2GError(f"{where}: seconds must be a non-empty list")
        ratios = (_number(row.get(k), f"{where}: {k}") for k in ("ratio_median", "ratio_min", "ratio_max"))
        base = row.get("baseline_seconds") or []
        if not isinstance(base, list):
            raise G2GError(f"{where}: baseline_seconds must be a list")
        rows.append(EpochSpeed(str(row.get("label", "")), ident,
                               tuple(_number(s, f"{where}: seconds") for s in seconds), *ratios,
                               baseline_seconds=tuple(_number(s, f"{where}: baseline_seconds") for s in base)))
    return EpochSpeeds(path, str(data.get("baseline", "")), data.get("env") or {}, tuple(rows))


def pareto(points: list[tuple[float, float]]) -> list[bool]:
    """For each (speed-up, accuracy): whether no other point is at least as fast and as accurate and
    better in one of them (the front a user picks from)."""
    return [not any(x2 >= x and y2 >= y and (x2 > x or y2 > y) for x2, y2 in points) for x, y in points]
