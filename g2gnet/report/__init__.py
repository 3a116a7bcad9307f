"""Reports from run directories only (SPEC §6, §10): the settings every row shares, one row per
configuration (runs that differ in nothing but seed, device and threads), mean ± sample std over
its seeds, and, against a named baseline row, differences paired by seed with a 95% t-interval and
a verdict. Rows and pairs that mix code versions say so.

``tables`` draws nothing; ``plots`` needs matplotlib and is skipped with a note when it is
missing. Run directories are read through ``g2gnet.runs``, which checks them.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import G2GError
from ..runs import find_runs
from .plots import draw_all
from .tables import (baseline_name, cells, columns, count, ordered, paired, paired_table, shared, table,
                     topology_table)

__all__ = ["build_report"]


def build_report(paths: list[Path], out: Path | None = None, by: list[str] | None = None,
                 baseline: str | None = None, plots: bool = True) -> str:
    """Markdown tables of the runs under ``paths``; with ``out``, also report.md and PNG plots."""
    records = find_runs(paths)
    cs = cells(records)
    keys = columns(cs, by)
    cs = ordered(cs, keys)
    settings = shared(cs, keys)
    text = (settings + "\n\n" if settings else "") + table(cs, keys)
    pairs = paired(cs, baseline) if baseline else []
    baseline = baseline_name(cs, baseline) if baseline else None
    # Every row a baseline row: nothing to pair, said rather than a missing table.
    alone = f"Every row matches {baseline}: no row to pair with it." if baseline and not pairs else None
    if pairs:
        text += "\n\n" + paired_table(pairs, keys, baseline)
    elif alone:
        text += "\n\n" + alone
    if out is None:
        return text
    if out.exists() and not out.is_dir():
        raise G2GError(f"--out {out} is a file, not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise G2GError(f"cannot create {out}: {e.strerror or e}") from None
    parts = [f"# Report\n\n{count(len(records), 'run')} in {count(len(cs), 'configuration')}. Final-model test accuracy, "
             "mean ± sample std over n seeds (the value alone for n = 1); a row is one configuration (runs "
             "differing only in seed, device and threads).\n", *([settings + "\n"] if settings else []),
             table(cs, keys), ""]
    if pairs:
        parts += [f"## Paired by seed against {baseline}\n",
                  "Δ = row minus baseline in percentage points, mean over the seeds both have; 95% "
                  "t-interval; verdict: better / worse when the interval excludes 0, else within noise.\n",
                  paired_table(pairs, keys, baseline), ""]
    elif alone:
        parts += [f"## Paired by seed against {baseline}\n", alone, ""]
    topo = topology_table(cs, keys)
    if topo:
        parts += ["## Topology under rewiring\n", "Mean over seeds, averaged over the sparse layers; "
                  "intra fraction = share of active links inside an ensemble (– for starts without "
                  "ensembles), ever active = share of all positions active at some point.\n", topo, ""]
    if plots:
        parts += draw_all(cs, keys, pairs, baseline, out)
    try:
        (out / "report.md").write_text("\n".join(parts))
    except OSError as e:
        raise G2GError(f"cannot write {out / 'report.md'}: {e.strerror or e}") from None
    return text
