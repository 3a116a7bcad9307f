"""When DST updates a mask and what fraction ζ of the active connections it swaps (SPEC §3).

Steps count optimizer steps: ``DynamicSparsity.step()`` is called after each
``optimizer.step()``, so step s is the state after s optimizer steps and step 0 never updates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import G2GError


@dataclass(frozen=True)
class Schedule:
    """Update every ``interval`` steps, swapping ``fraction_at(step)`` of the active connections.

    ``fraction`` is ζ (SET/RigL notation). ``decay="cosine"`` anneals it as
    ζ_t = ζ/2 (1 + cos(π t / (stop·T))) (RigL). No update happens after ``stop`` of the
    ``total_steps`` T, nor at step T itself: its regrown connections would start at 0 with no step
    left to train them, and the model would be evaluated so (SET's reference code likewise skips the
    last epoch's rewiring). T is needed only when ``stop < 1`` or the decay is cosine.
    """

    interval: int
    fraction: float
    decay: str
    stop: float
    total_steps: int | None = None

    def __post_init__(self) -> None:
        # interval, fraction, decay and stop are checked where they are declared (DSTConfig).
        if self.total_steps is None and (self.stop < 1.0 or self.decay == "cosine"):
            raise G2GError(f"DST with stop={self.stop} and decay={self.decay!r} needs total_steps")

    @property
    def last_step(self) -> float:
        """The last step at which an update may happen (inf when training length is open)."""
        if self.total_steps is None:
            return math.inf
        # 1e-9: 0.3*10 is 2.9999...; T - 1: never at the last step
        return min(math.floor(self.stop * self.total_steps + 1e-9), self.total_steps - 1)

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
