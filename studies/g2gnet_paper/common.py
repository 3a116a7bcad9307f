"""What the study's sections share: how a difference and a mean are written, a configuration's
short name, the cells a suite plans, and a section of one suite's runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from g2gnet.data.datasets import dataset_info
from g2gnet.errors import G2GError
from g2gnet.report.keys import Identity, identity, identity_key
from g2gnet.report.tables import (MIXED, Cell, Paired, baseline_name, cells, columns, count, fmt, mean_text,
                                  ordered, paired, paired_table, shared, table)
from g2gnet.runs import RunRecord, find_runs
from g2gnet.sweep import cell_parser, load_suite


def diff_text(p: Paired | None) -> str:
    """``+1.23 points [+0.45, +2.01], n = 3: better`` (``n = 3 †`` where the pairs cross code versions)."""
    if p is None or not p.diffs:
        return "not measured"
    ci = p.interval()
    n = f"n = {p.n}" + (f" {MIXED}" if p.mixed else "")
    if ci is None:
        return f"{p.mean():+.2f} points ({n})"
    return f"{p.mean():+.2f} points [{ci[1]:+.2f}, {ci[2]:+.2f}], {n}: {p.verdict()}"


def mean_n(c: Cell | None) -> str:
    """``55.57 ± 0.14 (n = 3)``, ``(n = 3 †)`` where its seeds ran under different code versions;
    ``–`` for a missing cell."""
    if c is None:
        return "–"
    m, s = c.mean_std()
    return f"{mean_text(m, s, len(c.runs))} (n = {len(c.runs)}{f' {MIXED}' if c.mixed else ''})"


def name(ident: Identity) -> str:
    """A configuration's short name: the model, and p', G and T where a sparse model sets them
    (``g2g-index p' = 0.05, G = 16``)."""
    model = str(ident["model.name"])
    if model.startswith("dense"):
        dropout = ident.get("model.dropout")
        return model + (f", dropout {fmt(dropout)}" if dropout else "")
    parts = [f"p' = {fmt(ident['model.p_inter'])}"]
    if ident.get("model.groups") != 8:
        parts.append(f"G = {fmt(ident['model.groups'])}")
    if ident.get("model.inter_tile", 1) != 1:
        parts.append(f"T = {fmt(ident['model.inter_tile'])}")
    return f"{model} {', '.join(parts)}"


def load(root: Path, dataset: str, suite: str) -> list[RunRecord]:
    """The finished runs of ``results/<dataset>/<suite>`` (none where it is missing)."""
    path = root / dataset / suite
    return find_runs([path]) if path.is_dir() and any(path.rglob("summary.json")) else []


@dataclass(frozen=True)
class Plan:
    """The cells a suite file plans: seeds per configuration identity (resolved as training
    resolves it), and the configurations' identities in the suite's order."""

    seeds: dict[str, int]
    identities: list[Identity]

    @property
    def runs(self) -> int:
        return sum(self.seeds.values())


def plan(path: Path) -> Plan | None:
    """The plan of a suite file; None where the file is not there (e.g. a copy of results/ alone)."""
    if not path.is_file():
        return None
    suite = load_suite(path, [], [], None, cell_parser())
    seeds: dict[str, int] = {}
    idents: dict[str, Identity] = {}
    for c in suite.cells:
        info = dataset_info(c.config.data.dataset)
        ident = identity(c.config.resolve(info.epochs, info.augment))
        key = identity_key(ident)
        seeds[key] = seeds.get(key, 0) + 1
        idents.setdefault(key, ident)
    return Plan(seeds, list(idents.values()))


def section(title: str, records: list[RunRecord], by: list[str], baseline: str | None, note: str,
            report_dir: str, devices: str) -> tuple[list[str], list[Cell]]:
    """A suite's section: the note, the settings its rows share, the table and the paired table."""
    if not records:
        return [f"### {title}\n", "Not run yet.\n"], []
    cs = cells(records)
    keys = columns(cs, by)
    cs = ordered(cs, keys)
    parts = [f"### {title}\n", note + f" {count(len(records), 'run')} ({devices}); report and plots: "
             f"[`{report_dir}`]({report_dir}/report.md).\n"]
    settings = shared(cs, keys)
    parts += ([settings + "\n"] if settings else []) + [table(cs, keys), ""]
    if baseline:
        pairs = paired(cs, baseline)
        if pairs:
            base = baseline_name(cs, baseline)
            parts += [f"Paired by seed against {base} (points, 95% t-interval):\n", paired_table(pairs, keys, base), ""]
    return parts, cs


def mean_of(c: Cell, key: str) -> float:
    value = c.mean(key)
    if value is None:
        raise G2GError(f"a run of {name(c.identity)} has no {key} in its summary.json")
    return value
