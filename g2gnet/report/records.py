"""What a report reads of a run beyond its configuration: summary facts by key and the code versions.

Reports name summary values by their summary.json key (table columns, plotted values), which the
typed ``Summary`` answers as a mapping; the code versions are ``runs.code_version``'s.
"""

from __future__ import annotations

from typing import Any

from ..runs import RunRecord, code_version


def fact(run: RunRecord, key: str) -> Any:
    """A value of the run's summary.json (None where it is absent)."""
    return run.summary.get(key)


def accuracy(run: RunRecord) -> float:
    """Final-model test accuracy in percent."""
    return 100 * fact(run, "test_acc")


def versions(run: RunRecord) -> tuple[str, ...]:
    """The code versions a run ran under, in order: its start and every resume in another version
    (``runs.code_version``). A start that recorded none is "unknown": a report cannot tell it
    from any other version, so a row that holds it beside a known one is marked as mixed."""
    out: list[str] = []
    for start in run.starts or [{}]:
        v = code_version(start) or "unknown"
        if v not in out:
            out.append(v)
    return tuple(out)
