"""When DST updates a mask and what fraction ζ of the active connections it swaps (SPEC §3).

Steps count optimizer steps: ``DynamicSparsity.step()`` is called after each
``optimizer.step()``, so step s is the state after s optimizer steps and step 0 never updates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import G2GError

DECAYS = ("constant", "cosine")


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@dataclass(frozen=True)
class Schedule:
    """Update every ``interval`` steps, swapping ``fraction_at(step)`` of the active connections.

    ``fraction`` is ζ (SET/RigL notation). ``decay="cosine"`` anneals it as
    ζ_t = ζ/2 (1 + cos(π t / (stop·T))) (RigL). No update happens after ``stop`` of the
    ``total_steps`` T; T is needed only when ``stop < 1`` or the decay is cosine.
    """

    interval: int = 1000
    fraction: float = 0.1
    decay: str = "constant"
    stop: float = 1.0
    total_steps: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.interval, bool) or not isinstance(self.interval, int) or self.interval < 1:
            raise G2GError(f"DST interval must be an integer >= 1, got {self.interval!r}")
        if not _is_number(self.fraction) or not 0.0 <= self.fraction <= 1.0:  # also rejects NaN
            raise G2GError(f"DST fraction must be in [0, 1], got {self.fraction!r}")
        if self.decay not in DECAYS:
            raise G2GError(f"unknown DST decay {self.decay!r}; valid: {', '.join(DECAYS)}")
        if not _is_number(self.stop) or not 0.0 < self.stop <= 1.0:
            raise G2GError(f"DST stop must be in (0, 1], got {self.stop!r}")
        steps = self.total_steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise G2GError(f"total_steps must be a positive integer, got {self.total_steps!r}")
        if self.total_steps is None and (self.stop < 1.0 or self.decay == "cosine"):
            raise G2GError(f"DST with stop={self.stop} and decay={self.decay!r} needs total_steps")

    @property
    def last_step(self) -> float:
        """The last step at which an update may happen (inf when training length is open)."""
        if self.total_steps is None:
            return math.inf
        return math.floor(self.stop * self.total_steps + 1e-9)  # 1e-9: 0.3*10 is 2.9999...

    def is_update(self, step: int) -> bool:
        return step > 0 and step % self.interval == 0 and step <= self.last_step

    def next_update(self, step: int) -> int | None:
        """The first update step strictly after ``step``, or None if there is none left."""
        nxt = (step // self.interval + 1) * self.interval
        return nxt if self.is_update(nxt) else None

    def fraction_at(self, step: int) -> float:
        if self.decay == "constant":
            return float(self.fraction)
        horizon = self.stop * self.total_steps
        t = min(step, horizon)
        return float(self.fraction) / 2 * (1 + math.cos(math.pi * t / horizon))
