"""The statistics and Markdown tables of a report (no plotting library): runs grouped into
configurations, mean ± sample std over seeds, the settings every row shares, differences paired by
seed against a baseline with a 95% t-interval and a verdict, and topology under DST. Rows and pairs
whose runs come from different code versions carry a mark (†) and a footnote."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field

from ..errors import G2GError
from ..runs import RunRecord
from .records import accuracy, fact, versions
from .keys import DST_RULE, baseline_text, identity, identity_key, parse_baseline, resolve, show

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (standard tables).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError("need at least one degree of freedom")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964  # Cornish-Fisher expansion around the normal quantile: < 1e-3 off beyond 30
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


@dataclass
class Cell:
    """The runs of one configuration (its repeats over seeds)."""

    key: str  # JSON of the configuration identity: equal for repeats
    identity: dict  # dotted key -> value (keys.identity)
    runs: list[RunRecord]

    def accs(self) -> dict[int, float]:
        """Test accuracy (%) by seed."""
        return {r.config.train.seed: accuracy(r) for r in self.runs}

    def mean_std(self) -> tuple[float, float]:
        return mean_std(list(self.accs().values()))

    def mean(self, key: str) -> float | None:
        """The mean of a summary value over the seeds (None where a run lacks it)."""
        values = [fact(r, key) for r in self.runs]
        return None if any(v is None for v in values) else statistics.fmean(values)

    def versions(self, seeds: set[int] | None = None) -> set[str]:
        """The code versions its runs (of ``seeds``, default all) ran under."""
        return {v for r in self.runs if seeds is None or r.config.train.seed in seeds for v in versions(r)}

    @property
    def mixed(self) -> bool:
        """Whether its seeds ran under more than one code version (a row marked ``MIXED``)."""
        return len(self.versions()) > 1


def cells(records: list[RunRecord]) -> list[Cell]:
    """Runs grouped by configuration identity; two runs of one cell with the same seed are an error
    (a report must not count a repeat twice)."""
    out: dict[str, Cell] = {}
    for r in records:
        ident = identity(r.config)
        key = identity_key(ident)
        cell = out.setdefault(key, Cell(key, ident, []))
        seed = r.config.train.seed
        twin = next((o for o in cell.runs if o.config.train.seed == seed), None)
        if twin is not None:
            raise G2GError(f"{r.path} and {twin.path} are the same configuration and seed {seed}; "
                           "report one of them")
        cell.runs.append(r)
    return list(out.values())


def columns(cs: list[Cell], by: list[str] | None) -> list[str]:
    """The config keys shown (dotted): ``by`` (checked; aliases resolved) plus every key that still
    varies between rows, so no two rows look alike; by default the keys that vary."""
    keys = list(cs[0].identity) if cs else []
    shown = [name for k in by or [] for name in resolve(k, keys, "--by key")]
    shown = list(dict.fromkeys(shown))
    shown += [k for k in keys if k not in shown and len({json.dumps(c.identity[k]) for c in cs}) > 1]
    return shown or ["model.name"]


def ordered(cs: list[Cell], keys: list[str]) -> list[Cell]:
    """Rows sorted by the shown keys in turn, numbers by value (p' = 0.05 before 0.1), so a sweep
    reads in order whatever order its run directories were found in."""
    def rank(value) -> tuple:
        if isinstance(value, bool) or value is None:
            return (0, str(value))
        if isinstance(value, (int, float)):
            return (1, value)
        return (2, json.dumps(value) if isinstance(value, list) else str(value))

    return sorted(cs, key=lambda c: tuple(rank(c.identity[k]) for k in keys))


def count(n: int, noun: str) -> str:
    """"1 run", "2 runs"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


fmt = show  # a config value as the tables print it


MIXED = "†"  # marks a row or a pair whose runs ran under different code versions
_MIXED_ROW = (f"{MIXED} the seeds of this row ran under different code versions (env.json source_sha256, or "
              "the git commit where it was not recorded; resumes included): the same distribution of models, "
              "not bit-identical ones.")
_MIXED_PAIR = (f"{MIXED} pairs runs of different code versions (env.json source_sha256, or the git commit where "
               "it was not recorded; resumes included): a seed gives bit-identical models only within one "
               "version, so such a difference also holds the versions' draw of masks and weights.")


def mean_text(m: float, s: float, n: int) -> str:
    """``m ± s``; one seed has no spread, so ``m`` alone."""
    return f"{m:.2f}" if n == 1 else f"{m:.2f} ± {s:.2f}"


def shared(cs: list[Cell], shown: list[str]) -> str | None:
    """The settings every row shares (the config keys not shown as columns), as one Markdown line;
    the DST section's details are left out where no row rewires."""
    if not cs:
        return None
    static = all(c.identity[DST_RULE[0]] is None for c in cs)
    items = [f"`{k}={fmt(v)}`" for k, v in cs[0].identity.items() if k not in shown
             and not (static and k.startswith("dst.") and k not in DST_RULE)]
    return "Shared by every row: " + " ".join(items) + "." if items else None


def table(cs: list[Cell], keys: list[str], expected: dict[str, int] | None = None) -> str:
    """Markdown: one row per configuration, test accuracy mean ± std (sample std) over seeds.
    ``expected``: seeds planned per cell key, shown as "n of N" (a suite still running)."""
    header = [*keys, "n", "test acc (%)", "active params", "density", "s/epoch"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    mixed = False
    for c in cs:
        m, s = c.mean_std()
        density = c.mean("density")
        n = f"{len(c.runs)}" + (f" of {expected[c.key]}" if expected and c.key in expected else "")
        if c.mixed:
            n, mixed = f"{n} {MIXED}", True
        cells_ = [*(fmt(c.identity[k]) for k in keys), n, mean_text(m, s, len(c.runs)),
                  f"{c.mean('active_params'):,.0f}", "1 (dense)" if density is None else f"{density:.4f}",
                  f"{c.mean('seconds_per_epoch'):.1f}"]
        lines.append("| " + " | ".join(cells_) + " |")
    return "\n".join(lines) + (f"\n\n{_MIXED_ROW}" if mixed else "")


@dataclass
class Paired:
    """Row minus baseline, paired by seed (percentage points). A row ``paired`` found no fair,
    unique baseline for has ``base`` None, no differences and ``reason`` saying why."""

    cell: Cell
    base: Cell | None
    diffs: list[float]

    seeds: tuple[int, ...] = ()
    reason: str | None = None
    which: dict = field(default_factory=dict)  # of several baseline rows, this one's values where they differ

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def mixed(self) -> bool:
        """Whether the paired runs ran under more than one code version."""
        if self.base is None:
            return False
        return len(self.cell.versions(set(self.seeds)) | self.base.versions(set(self.seeds))) > 1

    def mean(self) -> float | None:
        return statistics.fmean(self.diffs) if self.diffs else None

    def interval(self) -> tuple[float, float, float] | None:
        return interval(self.diffs)

    def verdict(self) -> str:
        return self.reason or verdict(self.diffs)


def interval(diffs: list[float]) -> tuple[float, float, float] | None:
    """(mean, low, high) of the 95% t-interval of paired differences; None with fewer than 2."""
    if len(diffs) < 2:
        return None
    m, s = mean_std(diffs)
    half = t975(len(diffs) - 1) * s / math.sqrt(len(diffs))
    return m, m - half, m + half


def verdict(diffs: list[float]) -> str:
    """better / worse when the 95% interval excludes 0, else within noise; n < 2 without one."""
    ci = interval(diffs)
    if ci is None:
        return "n < 2"
    return "better" if ci[1] > 0 else "worse" if ci[2] < 0 else "within noise"


# A baseline is fair to a row only under the same data and training settings (dataset, label set,
# epochs, learning rate, ...), unless ``--baseline`` itself names the key that differs.
_CONDITIONS = ("data.", "train.")


def paired(cs: list[Cell], baseline: str) -> list[Paired]:
    """Each row against the baseline row (one matching ``KEY=VALUE``) with its data and training
    settings that differs from it in the fewest other keys. A row without such a baseline, or with
    several equally near, stays with its ``reason`` (no difference, no verdict): a table never drops
    it silently nor pairs it with another dataset's baseline. Baseline rows are not compared with
    each other."""
    keys = list(cs[0].identity) if cs else []
    want = parse_baseline(baseline, keys)
    bases = [c for c in cs if all(fmt(c.identity[k]) == v for k, v in want.items())]
    if not bases:
        raise G2GError(f"no runs with {baseline_text(want)}")
    # With several baseline rows, each pair names its own by the keys in which they differ.
    telling = [k for k in keys if len({json.dumps(b.identity[k]) for b in bases}) > 1]
    out = []
    for c in cs:
        if c in bases:
            continue

        def differ(b: Cell, k: str) -> bool:
            return json.dumps(b.identity[k]) != json.dumps(c.identity[k])

        fair = [b for b in bases if not any(differ(b, k) for k in keys if k.startswith(_CONDITIONS) and k not in want)]
        if not fair:
            out.append(Paired(c, None, [], reason="no baseline with its data and training settings"))
            continue
        distance = {id(b): sum(differ(b, k) for k in keys if k not in want) for b in fair}
        nearest = [b for b in fair if distance[id(b)] == min(distance.values())]
        if len(nearest) > 1:
            out.append(Paired(c, None, [], reason=f"{len(nearest)} baselines equally near"))
            continue
        p = pair(c, nearest[0])
        p.which = {k: p.base.identity[k] for k in telling}
        out.append(p)
    return out


def pair(cell: Cell, base: Cell) -> Paired:
    """``cell`` minus ``base`` on the seeds both have."""
    a, b = cell.accs(), base.accs()
    seeds = tuple(sorted(set(a) & set(b)))
    return Paired(cell, base, [a[s] - b[s] for s in seeds], seeds)


def paired_table(pairs: list[Paired], keys: list[str], baseline: str) -> str:
    """Markdown: each pair's mean difference, 95% t-interval and verdict; ``baseline`` names the
    baseline in the header (``baseline_name``). With several baseline rows, a column names each
    row's (its values of the keys in which the baseline rows differ)."""
    which = any(p.which for p in pairs)
    header = [*keys, *(["paired with"] if which else []), "n pairs", f"Δ vs {baseline} (points)", "95% CI",
              "verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for p in pairs:
        ci = p.interval()
        mean = p.mean()
        ci_txt = "–" if ci is None else f"[{ci[1]:+.2f}, {ci[2]:+.2f}]"
        base = "–" if p.base is None else " ".join(f"{k}={fmt(v)}" for k, v in p.which.items())
        cells_ = [*(fmt(p.cell.identity[k]) for k in keys), *([base] if which else []),
                  f"{p.n} {MIXED}" if p.mixed else str(p.n), "–" if mean is None else f"{mean:+.2f}", ci_txt,
                  p.verdict()]
        lines.append("| " + " | ".join(cells_) + " |")
    return "\n".join(lines) + (f"\n\n{_MIXED_PAIR}" if any(p.mixed for p in pairs) else "")


def topology_series(run: RunRecord) -> list[tuple[int, float | None, float]]:
    """(step, mean intra fraction, mean ever-active fraction) at each DST update of a run."""
    series = []
    for rec in run.metrics:
        for update in rec.get("dst", []):
            layers = list(update["layers"].values())
            intra = [l["intra_fraction"] for l in layers if l.get("intra_fraction") is not None]
            series.append((update["step"], statistics.fmean(intra) if intra else None,
                           statistics.fmean(l["ever_active"] for l in layers)))
    return series


def topology_table(cs: list[Cell], keys: list[str]) -> str | None:
    """Markdown: intra-group and ever-active fractions after the first and the last DST update."""
    rows = []
    for c in cs:
        series = [s for s in (topology_series(r) for r in c.runs) if s]
        if series:
            rows.append((c, series))
    if not rows:
        return None
    header = [*keys, "n", "updates", "intra fraction after 1st → last update", "ever active after 1st → last update"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def avg(values: list) -> str:
        return "–" if any(v is None for v in values) else f"{statistics.fmean(values):.3f}"

    for c, series in rows:
        first, last = [s[0] for s in series], [s[-1] for s in series]
        cells_ = [*(fmt(c.identity[k]) for k in keys), str(len(series)), str(min(len(s) for s in series)),
                  f"{avg([f[1] for f in first])} → {avg([l[1] for l in last])}",
                  f"{avg([f[2] for f in first])} → {avg([l[2] for l in last])}"]
        lines.append("| " + " | ".join(cells_) + " |")
    return "\n".join(lines)


def label(c: Cell, keys: list[str]) -> str:
    """A row's short name for plots: the model by name, a DST rule as ``PRUNE:GROW`` (or static),
    other keys as ``field=value``."""
    parts = []
    for k in keys:
        v = c.identity[k]
        if k in ("model.name", "data.dataset"):
            parts.append(fmt(v))
        elif k in DST_RULE:
            if k == DST_RULE[0] or DST_RULE[0] not in keys:
                prune, grow = (c.identity[d] for d in DST_RULE)
                parts.append("static" if prune is None else f"{prune}:{grow}")
        else:
            parts.append(f"{k.split('.', 1)[1]}={fmt(v)}")
    return ", ".join(parts)


def baseline_name(cs: list[Cell], baseline: str) -> str:
    """The baseline as the tables name it: dotted keys, aliases resolved (``model.name=dense``)."""
    return baseline_text(parse_baseline(baseline, list(cs[0].identity) if cs else []))
