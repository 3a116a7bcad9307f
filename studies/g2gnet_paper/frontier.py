"""RESULTS.md's "Accuracy–speed frontier": which G2G gives the best accuracy per second of training.

Cells: the frontier suite's (p' below 0.05, the number of ensembles G, inter-ensemble tiles T),
the p' sweep's p' = 0.05 cells of the same groupings and Table I's dense. Speeds: the epoch-speed
file of ``g2g bench`` (``results/bench/frontier/<dataset>.json``), matched by configuration; where
it is missing, the section says the speeds are not measured yet.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from g2gnet.report.keys import Identity, identity_key
from g2gnet.report.plots import accuracy_vs_speedup
from g2gnet.report.speed import EpochSpeed, EpochSpeeds, pareto, read_epoch_speeds
from g2gnet.report.tables import MIXED, Cell, Paired, cells, count, mean_text, ordered, pair, shared
from g2gnet.runs import RunRecord

from .common import Plan, load, mean_of, name, plan

KEYS = ["model.name", "model.p_inter", "model.groups", "model.inter_tile"]
ENV = ("device", "cuda_device", "processor", "threads", "torch")  # what the bench file says it ran on


def speeds_file(root: Path, dataset: str, data_name: str | None) -> Path:
    """``results/bench/frontier/<dataset>.json`` (the results folder's name, or the dataset's)."""
    folder = root / "bench" / "frontier"
    for stem in (dataset, data_name):
        if stem and (folder / f"{stem}.json").exists():
            return folder / f"{stem}.json"
    return folder / f"{dataset}.json"


@dataclass(frozen=True)
class Row:
    """One configuration of the frontier: its runs, its pair with dense, its measured speed."""

    cell: Cell
    planned: int | None  # seeds the suite plans (None: a row taken from another suite)
    vs_dense: Paired | None
    speedup: tuple[float, float, float] | None  # median, min, max; dense: 1
    flops: float | None  # FLOPs per sample over dense's
    baseline: bool = False  # dense, the 1× of the speed-ups
    front: bool = False


@dataclass(frozen=True)
class Frontier:
    rows: list[Row]
    waiting: list[Identity]  # planned configurations without a finished run
    planned: Plan | None
    speeds: EpochSpeeds | None
    speeds_path: Path


def frontier(root: Path, dataset: str, suites: Path, pinter: list[RunRecord],
             table1: list[RunRecord]) -> Frontier | None:
    """The frontier's rows from the run directories (None where the dataset has no frontier)."""
    planned = plan(suites / f"{dataset}-frontier.toml")
    records = load(root, dataset, "frontier")
    if planned is None and not records:
        return None
    models = {i["model.name"] for i in planned.identities} if planned else None
    at_005 = [r for r in pinter if r.config.model.p_inter == 0.05 and (models is None or r.config.model.name in models)]
    dense_runs = [r for r in table1 if r.config.model.name == "dense" and not r.config.model.dropout]
    cs = ordered(cells(records + at_005 + dense_runs), KEYS)
    dense = next((c for c in cs if c.identity["model.name"] == "dense"), None)
    path = speeds_file(root, dataset, cs[0].runs[0].config.data.dataset if cs else None)
    speeds = read_epoch_speeds(path)
    expected = planned.seeds if planned else {}
    rows = []
    for c in cs:
        p = pair(c, dense) if dense is not None and c is not dense else None
        timed: EpochSpeed | None = speeds.find(c.identity) if speeds and c is not dense else None
        speed = (1.0, 1.0, 1.0) if speeds and c is dense else (timed.median, timed.low, timed.high) if timed else None
        flops = mean_of(c, "flops_per_sample") / mean_of(dense, "flops_per_sample") if dense else None
        rows.append(Row(c, expected.get(c.key), p if p and p.diffs else None, speed, flops, c is dense))
    timed_rows = [r for r in rows if r.speedup is not None]
    on_front = pareto([(r.speedup[0], r.cell.mean_std()[0]) for r in timed_rows])
    front = {id(r) for r, f in zip(timed_rows, on_front) if f}
    rows = [dataclasses.replace(r, front=id(r) in front) for r in rows]
    done = {c.key for c in cs}
    waiting = [i for i in (planned.identities if planned else []) if identity_key(i) not in done]
    return Frontier(rows, waiting, planned, speeds, path)


def _markdown_rows(f: Frontier) -> list[str]:
    header = ["configuration", "density", "n", "test acc (%)", "Δ vs dense (points)", "95% CI",
              "epoch speed-up (median, min–max)", "FLOPs vs dense", *(["Pareto front"] if f.speeds else [])]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in f.rows:
        m, s = r.cell.mean_std()
        density = r.cell.mean("density")
        n = (f"{len(r.cell.runs)}" + (f" of {r.planned}" if r.planned else "")
             + (f" {MIXED}" if r.cell.mixed else ""))
        delta, ci = "–", "–"
        if r.vs_dense is not None:
            delta = f"{r.vs_dense.mean():+.2f}" + (f" {MIXED}" if r.vs_dense.mixed else "")
            iv = r.vs_dense.interval()
            ci = "–" if iv is None else f"[{iv[1]:+.2f}, {iv[2]:+.2f}]"
        if f.speeds is None:
            speed = "not measured"
        elif r.speedup is None:
            speed = "–"
        elif r.baseline:
            speed = "1× (baseline)"
        else:
            speed = f"{r.speedup[0]:.2f}× ({r.speedup[1]:.2f}–{r.speedup[2]:.2f})"
        row = [name(r.cell.identity), "1 (dense)" if density is None else f"{density:.4f}", n,
               mean_text(m, s, len(r.cell.runs)), delta, ci, speed, "–" if r.flops is None else f"{r.flops:.2f}×"]
        if f.speeds:
            row.append("◆" if r.front else "")
        lines.append("| " + " | ".join(row) + " |")
    if any(r.cell.mixed or r.vs_dense is not None and r.vs_dense.mixed for r in f.rows):
        lines += ["", f"{MIXED} (n) the row's seeds, (Δ) the pair's runs ran under different code versions."]
    return lines


def section(root: Path, dataset: str, suites: Path, pinter: list[RunRecord],
            table1: list[RunRecord]) -> tuple[list[str], list[Cell]]:
    """The section's Markdown and its cells (none where the dataset has no frontier suite)."""
    f = frontier(root, dataset, suites, pinter, table1)
    if f is None:
        return [], []
    rel = f.speeds_path.relative_to(root.parent)
    finished = sum(len(r.cell.runs) for r in f.rows if r.planned)
    parts = ["### Accuracy–speed frontier\n",
             "Which G2G gives the best accuracy per second of training: p' below the p' sweep's best (0.05), the "
             "number of ensembles G, and inter-ensemble links in T × T tiles; the p' = 0.05 rows are the p' sweep's "
             "runs, dense is Table I's. "
             + (f"Frontier suite: {finished} of {count(f.planned.runs, 'run')} finished "
                f"(`g2g sweep suites/{dataset}-frontier.toml`). " if f.planned else "")
             + "Δ vs dense paired by seed with its 95% t-interval; FLOPs per sample on active weights "
               "(theoretical).\n"]
    cs = [r.cell for r in f.rows]
    if not cs:
        return parts + ["Not run yet.\n"], []
    settings = shared(cs, KEYS)
    parts += [settings + "\n"] if settings else []
    if f.speeds is None:
        parts.append(f"Epoch speed-ups: not measured yet (`{rel}` is written by `g2g bench`'s epoch timing of "
                     "these configurations).\n")
    else:
        env = ", ".join(f"{k} {f.speeds.env[k]}" for k in ENV if k in f.speeds.env)
        parts.append(f"Epoch speed-ups measured by `g2g bench` ([`{rel}`]({rel}){'; ' + env if env else ''}): whole "
                     "training epochs, interleaved with dense in one process; median (min–max) over repeats of "
                     "dense's seconds / this configuration's seconds. ◆: on the Pareto front (no other row both "
                     "faster and more accurate).\n")
    parts += ["\n".join(_markdown_rows(f)), ""]
    if f.waiting:
        parts.append("Not started yet: " + ", ".join(f"{name(i)} (0 of {f.planned.seeds[identity_key(i)]})"
                                                     for i in f.waiting) + ".\n")
    if f.speeds is not None and _plot(f, root / dataset / "frontier" / "accuracy_vs_speedup.png"):
        parts.append("![accuracy against measured epoch speed-up]"
                     f"(results/{dataset}/frontier/accuracy_vs_speedup.png)\n")
    return parts, cs


def _plot(f: Frontier, path: Path) -> bool:
    """Accuracy against the measured speed-up, dense at 1×, the Pareto front marked."""
    try:
        import matplotlib  # noqa: F401  (the optional plot extra)
    except ImportError:
        return False
    pts = [(name(r.cell.identity), r.speedup, (*r.cell.mean_std(), len(r.cell.runs)), r.front)
           for r in f.rows if r.speedup is not None]
    path.parent.mkdir(parents=True, exist_ok=True)
    return accuracy_vs_speedup(pts, path)
