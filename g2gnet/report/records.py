"""What a report reads of a run beyond its configuration: summary facts and the code version.

The one place report code reads summary.json and env.json keys, so the typed run records that
``runs.py`` is growing replace the dict access here and nowhere else.
"""

from __future__ import annotations

from typing import Any

from ..runs import RunRecord


def fact(run: RunRecord, key: str) -> Any:
    """A value of the run's summary.json (None where it is absent)."""
    return run.summary.get(key)


def accuracy(run: RunRecord) -> float:
    """Final-model test accuracy in percent."""
    return 100 * fact(run, "test_acc")


def _version(env: dict) -> str:
    sha = env.get("source_sha256")
    if sha:
        return str(sha)
    git = env.get("git_sha")  # runs from before source_sha256 was recorded
    if git:
        return f"git:{git}" + ("+dirty" if env.get("git_dirty") else "")
    return "unknown"


def versions(run: RunRecord) -> tuple[str, ...]:
    """The code versions a run ran under, in order: its start and every resume in another version
    (env.json ``source_sha256``; the git commit, marked dirty, where that was not recorded)."""
    out = [_version(run.env)]
    for resume in run.env.get("resumes") or []:
        v = _version(resume) if isinstance(resume, dict) else "unknown"
        if v not in out:
            out.append(v)
    return tuple(out)
