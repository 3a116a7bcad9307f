"""RESULTS.md's "Long schedule": does G2G's gain over dense last when every model trains longer?

The long suite's runs (``results/<dataset>/long``, e.g. 100 epochs) against Table I's (30 epochs):
each configuration paired by seed with itself at Table I's length, the gain over dense at both
lengths (and its change, paired by seed), learning curves with seed bands, and the epochs (and,
from the bench's clean seconds per epoch, the time) each model needs to reach dense's best.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from g2gnet.report.plots import curve, learning_curves
from g2gnet.report.speed import read_epoch_speeds
from g2gnet.report.tables import (MIXED, Cell, Paired, baseline_name, cells, columns, count, fmt, interval, ordered,
                                  pair, paired, paired_table, shared, table, verdict)

from .common import load, name, plan
from .frontier import speeds_file

BASELINE = "model.name=dense,model.dropout=0"


def is_dense(c: Cell) -> bool:
    return c.identity["model.name"] == "dense" and not c.identity["model.dropout"]


def twin(c: Cell, others: list[Cell]) -> Cell | None:
    """The cell of ``others`` with ``c``'s configuration but for its number of epochs."""
    def bare(x: Cell) -> dict:
        return {k: v for k, v in x.identity.items() if k != "train.epochs"}

    hits = [o for o in others if bare(o) == bare(c)]
    return hits[0] if len(hits) == 1 else None


@dataclass(frozen=True)
class GainChange:
    """A configuration's gain over dense at the short and the long schedule, on the seeds all four
    cells share; ``change`` = long gain − short gain per seed."""

    cell: Cell
    short: list[float]
    long: list[float]
    change: list[float]
    mixed: bool  # the four cells' runs span more than one code version


def against_short(cs: list[Cell], short: list[Cell]) -> list[Paired]:
    """Each long configuration minus itself at the short schedule, paired by seed."""
    out = []
    for c in cs:
        t = twin(c, short)
        if t is not None and (p := pair(c, t)).diffs:
            out.append(p)
    return out


def gain_changes(cs: list[Cell], short: list[Cell]) -> list[GainChange]:
    dense, dense_short = next((c for c in cs if is_dense(c)), None), next((c for c in short if is_dense(c)), None)
    if dense is None or dense_short is None:
        return []
    out = []
    for c in cs:
        t = twin(c, short)
        if is_dense(c) or t is None:
            continue
        a, b, a0, b0 = c.accs(), dense.accs(), t.accs(), dense_short.accs()
        seeds = sorted(set(a) & set(b) & set(a0) & set(b0))
        if seeds:
            versions = set().union(*(x.versions(set(seeds)) for x in (c, dense, t, dense_short)))
            out.append(GainChange(c, [a0[s] - b0[s] for s in seeds], [a[s] - b[s] for s in seeds],
                                  [(a[s] - b[s]) - (a0[s] - b0[s]) for s in seeds], len(versions) > 1))
    return out


@dataclass(frozen=True)
class Reach:
    """When a configuration's mean curve first reaches dense's best epoch accuracy."""

    cell: Cell
    epoch: int | None  # None: not within its schedule
    epochs: int  # epochs in its curve
    seconds_per_epoch: float | None  # clean, from the bench (None: not timed)

    @property
    def seconds(self) -> float | None:
        return self.epoch * self.seconds_per_epoch if self.epoch and self.seconds_per_epoch else None


def time_to_best(cs: list[Cell], dense: Cell, speeds) -> tuple[float, int, list[Reach]]:
    """Dense's best mean epoch accuracy, its epoch, and each configuration's reach of it."""
    dense_curve = [m for m, _ in curve(dense.runs)]
    best = max(dense_curve)
    reach = []
    for c in cs:
        mean_curve = [m for m, _ in curve(c.runs)]
        epoch = next((e + 1 for e, m in enumerate(mean_curve) if m >= best), None)
        timed = speeds.find(c.identity, ignore=("train.epochs",)) if speeds else None
        per_epoch = timed.seconds_per_epoch if timed else None
        if per_epoch is None and speeds and c is dense:  # dense is timed beside every configuration
            per_epoch = speeds.baseline_seconds_per_epoch(c.identity.get("model.hidden"))
        reach.append(Reach(c, epoch, len(mean_curve), per_epoch))
    return best, dense_curve.index(best) + 1, reach


def _interval(diffs: list[float]) -> str:
    """``+1.23 [+0.45, +2.01]`` (the mean alone for one pair)."""
    ci = interval(diffs)
    return f"{statistics.fmean(diffs):+.2f}" if ci is None else f"{ci[0]:+.2f} [{ci[1]:+.2f}, {ci[2]:+.2f}]"


def _mark(mixed: bool) -> str:
    return f" {MIXED}" if mixed else ""


def _against_short_md(cs: list[Cell], short: list[Cell]) -> list[str]:
    e_long = fmt(cs[0].identity["train.epochs"])
    e_short = fmt(short[0].identity["train.epochs"]) if short else "?"
    own = [f"| configuration | n pairs | {e_short} epochs | {e_long} epochs | Δ ({e_long} − {e_short}) [95% CI] "
           "| verdict |", "|---|---|---|---|---|---|"]
    pairs = against_short(cs, short)
    for p in pairs:
        own.append(f"| {name(p.cell.identity)} | {p.n}{_mark(p.mixed)} | {p.base.mean_std()[0]:.2f} | "
                   f"{p.cell.mean_std()[0]:.2f} | {_interval(p.diffs)} | {p.verdict()} |")
    out = [f"Each configuration at {e_long} against {e_short} epochs (Table I's runs; the frontier's for a "
           "configuration Table I lacks), paired by seed:\n",
           "\n".join(own), ""]
    changes = gain_changes(cs, short)
    if changes:
        gain = [f"| configuration | n | Δ vs dense at {e_short} | Δ vs dense at {e_long} | change of Δ [95% CI] "
                "| verdict |", "|---|---|---|---|---|---|"]
        gain += [f"| {name(g.cell.identity)} | {len(g.change)}{_mark(g.mixed)} | {_interval(g.short)} | "
                 f"{_interval(g.long)} | {_interval(g.change)} | {verdict(g.change)} |" for g in changes]
        out += [f"The gain over dense at {e_short} and at {e_long} epochs, with its change paired by seed "
                f"((G2G − dense at {e_long}) − (G2G − dense at {e_short})): a negative change means the gap "
                "closes.\n",
                "\n".join(gain), ""]
    if any(p.mixed for p in pairs) or any(g.mixed for g in changes):
        out.append(f"{MIXED} pairs runs of different code versions (Table I's runs are older than the long ones).\n")
    return out


def _time_to_best_md(cs: list[Cell], dense: Cell, root: Path, dataset: str) -> tuple[list[str], tuple[float, str]]:
    path = speeds_file(root, dataset, dense.runs[0].config.data.dataset)
    speeds = read_epoch_speeds(path)
    rel = path.relative_to(root.parent)
    best, best_epoch, reach = time_to_best(cs, dense, speeds)
    dense_time = next((r.seconds for r in reach if r.cell is dense), None)
    lines = ["| configuration | n | first epoch at dense's best (mean curve) | clean s/epoch (bench) | "
             "time to reach (s) | vs dense |", "|---|---|---|---|---|---|"]
    for r in reach:
        t = r.seconds
        lines.append(f"| {name(r.cell.identity)} | {len(r.cell.runs)} | "
                     f"{r.epoch if r.epoch else f'not reached in {r.epochs}'} | "
                     f"{'–' if r.seconds_per_epoch is None else f'{r.seconds_per_epoch:.2f}'} | "
                     f"{'–' if t is None else f'{t:.0f}'} | "
                     f"{f'{t / dense_time:.2f}×' if t and dense_time else '–'} |")
    source = (f"clean seconds per epoch from `g2g bench` ([`{rel}`]({rel}); '–' where it did not time the "
              "configuration, whose time is then given in epochs only)" if speeds else
              f"in epochs only: the bench's clean seconds per epoch are not measured yet (`{rel}`), and the runs' own "
              "s/epoch ran under load, so they are no speed measurement")
    text = [f"Time to reach dense's best accuracy ({best:.2f}%, mean over its seeds, at epoch {best_epoch}): the first "
            f"epoch at which a configuration's mean curve reaches it, {source}.\n", "\n".join(lines), ""]
    return text, (best, f"dense's best ({best:.2f}%, epoch {best_epoch})")


def section(root: Path, dataset: str, suites: Path, short: list[Cell]) -> tuple[list[str], list[Cell]]:
    """The section's Markdown and its cells (none where the dataset has no long suite)."""
    planned = plan(suites / f"{dataset}-long.toml")
    records = load(root, dataset, "long")
    if planned is None and not records:
        return [], []
    total = f" of {count(planned.runs, 'run')}" if planned else f" {count(len(records), 'run')}"
    parts = ["### Long schedule\n",
             "Table I's set-up trained longer (the cosine schedule stretched), against Table I's runs; with it the "
             "frontier's most accurate configuration, chosen by its test accuracy at 30 epochs (its lead is measured "
             f"on the test set that chose it). {len(records)}"
             f"{total} finished (`g2g sweep suites/{dataset}-long.toml`)"
             + (f"; report and plots: [`results/{dataset}/long`](results/{dataset}/long/report.md).\n" if records
                else ": not run yet.\n")]
    if not records:
        return parts, []
    cs = cells(records)
    keys = columns(cs, ["model.name", "model.dropout"])
    cs = ordered(cs, keys)
    settings = shared(cs, keys)
    parts += ([settings + "\n"] if settings else []) + [table(cs, keys, planned.seeds if planned else None), ""]
    dense = next((c for c in cs if is_dense(c)), None)
    if dense is None:
        parts.append("Dense has no finished run yet: no comparison with it.\n")
    elif pairs := paired(cs, BASELINE):
        base = baseline_name(cs, BASELINE)
        parts += [f"Paired by seed against {base} at {fmt(dense.identity['train.epochs'])} epochs (points, 95% "
                  "t-interval):\n", paired_table(pairs, keys, base), ""]
    parts += _against_short_md(cs, short)
    target = None
    if dense is not None and all(r.metrics for r in dense.runs):
        text, target = _time_to_best_md(cs, dense, root, dataset)
        parts += text
    try:
        drawn = learning_curves(cs, keys, root / dataset / "long" / "learning_curves_long.png", target=target)
    except ImportError:  # the optional plot extra
        drawn = False
    if drawn:
        parts.append(f"![learning curves, mean ± std over seeds](results/{dataset}/long/learning_curves_long.png)\n")
    return parts, cs
