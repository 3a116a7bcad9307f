"""The claims table: the rows of ``claims.toml`` (data) evaluated on the study's cells.

A claim row names its cells through selections and its measurement through a kind (``KINDS``: a
plain dict of functions); its wording and the verdicts it gives are the row's own text. Every
number comes from the run directories through the report's cells and pairs.
"""

from __future__ import annotations

import dataclasses
import statistics
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from g2gnet.config import SECTIONS
from g2gnet.errors import G2GError, lookup
from g2gnet.report.records import fact
from g2gnet.report.tables import Cell, Paired, fmt, pair

from .common import diff_text, mean_n, mean_of

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

CLAIMS = Path(__file__).with_name("claims.toml")
Pools = dict[str, list[Cell]]  # the study's named sets of cells, per dataset


@dataclass(frozen=True)
class Select:
    name: str
    pools: tuple[str, ...]
    where: dict
    pick: str = "only"

    def cells(self, pools: Pools) -> list[Cell]:
        return [c for p in self.pools for c in pools.get(p, [])
                if all(_matches(c, k, v) for k, v in self.where.items())]

    def one(self, pools: Pools) -> Cell | None:
        """The selected cell: the only match, or the most accurate one (``best``)."""
        hits = self.cells(pools)
        if self.pick == "best":
            return max(hits, key=lambda c: c.mean_std()[0], default=None)
        return hits[0] if len(hits) == 1 else None


def _matches(c: Cell, key: str, want) -> bool:
    have = fmt(c.identity.get(key))
    if isinstance(want, str) and want.endswith("*"):
        return have.startswith(want[:-1])
    return have == fmt(want)


@dataclass(frozen=True)
class Claim:
    claim: str
    datasets: tuple[str, ...]
    kind: str
    measured: str
    of: Select | None = None
    against: Select | None = None
    verdict: str | None = None
    verdicts: dict | None = None
    missing: str | None = None
    reach: float | None = None
    reference: str | None = None


@dataclass(frozen=True)
class Row:
    """One row of the claims table, with the pair behind it (None for kinds without one)."""

    claim: str
    dataset: str
    measured: str
    verdict: str
    pair: Paired | None = None
    selected: bool = False  # a configuration chosen among several by its test accuracy

    def markdown(self, title: str) -> str:
        return f"| {self.claim} | {title} | {self.measured} | {self.verdict}{f' {SELECTED}' if self.selected else ''} |"


SELECTED = "‡"  # marks a claim whose configuration was chosen by test accuracy
SELECTED_NOTE = (f"{SELECTED} the configuration was chosen among several by its mean test accuracy (these runs "
                 "keep no validation split): the selection and the measurement share the test set, so the "
                 "difference is optimistic and its verdict is not a held-out test.")


def _chosen(select: Select | None, pools: Pools) -> bool:
    """Whether ``select`` picked the most accurate of several cells."""
    return select is not None and select.pick == "best" and len({c.key for c in select.cells(pools)}) > 1


class CellView:
    """A cell as a claim's text names it: ``{of.model}``, ``{of.mean}``, ``{of.p_inter}`` (any
    config field by its name), printed as the tables print values."""

    def __init__(self, cell: Cell) -> None:
        self._cell = cell

    def __getattr__(self, field: str) -> str:
        c = object.__getattribute__(self, "_cell")
        if field == "model":
            return fmt(c.identity["model.name"])
        if field == "mean":
            return mean_n(c)
        return fmt(c.identity[_FIELDS[field]])


# Config fields by their name (``p_inter`` -> ``model.p_inter``) for ``{of.p_inter}``; names that two
# sections share (none today) would need the dotted key.
_FIELDS = {f.name: f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
_VIEW = {"model", "mean", *_FIELDS}
_DOTTED = {v: v for v in _FIELDS.values()}


# -- the kinds: (claim, dataset, pools) -> Row | None ------------------------------------------------

def _density(c: Claim, dataset: str, pools: Pools) -> Row | None:
    dens = [d for cell in c.of.cells(pools) for r in cell.runs if (d := fact(r, "density")) is not None]
    if not dens:
        return _missing(c, dataset)
    d = statistics.fmean(dens)
    return Row(c.claim, dataset, c.measured.format(density=d, sparsity=100 * (1 - d)), c.verdict)


@dataclass(frozen=True)
class Reference:
    """The same comparison in the reference pool: ``{reference.diff}``, ``{reference.epochs}``."""

    diff: str
    epochs: str


def _reference(c: Claim, of: Cell, against: Cell, pools: Pools) -> Reference:
    """``of`` against ``against`` as the reference pool ran them: the same configurations but for
    their number of epochs (e.g. Table I's 30 against a 100-epoch schedule), paired by seed."""
    def bare(cell: Cell) -> dict:
        return {k: v for k, v in cell.identity.items() if k != "train.epochs"}

    def twin(cell: Cell) -> Cell | None:
        hits = [x for x in pools.get(c.reference or "", []) if bare(x) == bare(cell)]
        return hits[0] if len(hits) == 1 else None

    a, b = twin(of), twin(against)
    p = pair(a, b) if a is not None and b is not None else None
    return Reference(diff_text(p if p and p.diffs else None), fmt(a.identity["train.epochs"]) if a else "–")


class _Fields(dict):
    """A claim text's fields, the costlier ones computed only when the text names them."""

    def __init__(self, lazy: dict[str, Callable[[], object]], **given) -> None:
        super().__init__(**given)
        self._lazy = lazy

    def __missing__(self, key: str):
        if key in self._lazy:
            return self._lazy[key]()
        raise KeyError(key)


def _compare(c: Claim, dataset: str, pools: Pools) -> Row | None:
    of, against = c.of.one(pools), c.against.one(pools)
    if of is None or against is None:
        return _missing(c, dataset)
    p = pair(of, against)
    p = p if p.diffs else None
    fields = _Fields({"params": lambda: mean_of(of, "active_params") / mean_of(against, "active_params"),
                      "flops": lambda: mean_of(of, "flops_per_sample") / mean_of(against, "flops_per_sample"),
                      "reference": lambda: _reference(c, of, against, pools)},
                     of=CellView(of), against=CellView(against), diff=diff_text(p))
    if c.verdict is not None:
        verdict = c.verdict
    elif p is None:
        verdict = "–"
    else:
        verdict = (c.verdicts or {}).get(p.verdict(), p.verdict())
    # (A fixed verdict, e.g. FLOPs, does not rest on the chosen cell's accuracy.)
    return Row(c.claim, dataset, c.measured.format_map(fields), verdict, p,
               c.verdict is None and (_chosen(c.of, pools) or _chosen(c.against, pools)))


def _largest_gain(c: Claim, dataset: str, pools: Pools) -> Row | None:
    against = c.against.one(pools)
    gains = [(p, cell) for cell in c.of.cells(pools) if against is not None
             and (p := pair(cell, against)).n >= 2]
    if not gains:
        return _missing(c, dataset)
    p, cell = max(gains, key=lambda pc: pc[0].mean())
    fields = {"of": CellView(cell), "against": CellView(against), "diff": diff_text(p), "gain": p.mean(),
              "reach": f"{c.reach:g}"}
    outcome = "reached" if p.mean() >= c.reach else "not reached"
    return Row(c.claim, dataset, c.measured.format(**fields), c.verdicts[outcome].format(**fields), p,
               len({cell.key for _, cell in gains}) > 1 or _chosen(c.against, pools))


def _fixed(c: Claim, dataset: str, pools: Pools) -> Row | None:
    return Row(c.claim, dataset, c.measured, c.verdict)


def _missing(c: Claim, dataset: str) -> Row | None:
    return Row(c.claim, dataset, c.missing, "–") if c.missing else None


Kind = Callable[[Claim, str, Pools], "Row | None"]
KINDS: dict[str, Kind] = {"density": _density, "compare": _compare, "largest-gain": _largest_gain, "fixed": _fixed}
# What each kind's text and verdicts may name, and what a row of that kind must give.
FIELDS = {"density": {"density", "sparsity"}, "compare": {"of", "against", "diff", "params", "flops", "reference"},
          "largest-gain": {"of", "against", "diff", "gain", "reach"}, "fixed": set()}
NEEDS = {"density": ("of", "verdict"), "compare": ("of", "against"),
         "largest-gain": ("of", "against", "reach", "verdicts"), "fixed": ("verdict",)}
OUTCOMES = {"compare": {"better", "within noise", "worse", "n < 2"}, "largest-gain": {"reached", "not reached"}}


# -- reading claims.toml -----------------------------------------------------------------------------

def _check_text(text: str, kind: str, where: str) -> None:
    for _, field, _, _ in string.Formatter().parse(text):
        if field is None:
            continue
        root, _, attr = field.partition(".")
        if root not in FIELDS[kind]:
            raise G2GError(f"{where}: unknown field {{{field}}}; valid for {kind}: {', '.join(sorted(FIELDS[kind]))}")
        if root in ("of", "against") and attr not in _VIEW:
            raise G2GError(f"{where}: unknown field {{{field}}}; a cell gives model, mean or a config field")
        if root == "reference" and attr not in ("diff", "epochs"):
            raise G2GError(f"{where}: unknown field {{{field}}}; reference gives diff, epochs")


def _select(name: str, spec: dict) -> Select:
    unknown = set(spec) - {"from", "where", "pick"}
    if unknown:
        raise G2GError(f"select.{name}: unknown key(s) {', '.join(sorted(unknown))}; valid: from, where, pick")
    pick = spec.get("pick", "only")
    lookup({"only": 0, "best": 0, "all": 0}, pick, f"pick of select.{name}")
    for key in spec.get("where", {}):
        lookup(_DOTTED, key, f"config key in select.{name}")
    return Select(name, tuple(spec.get("from", ())), dict(spec.get("where", {})), pick)


def load_claims(path: Path = CLAIMS) -> list[Claim]:
    """The claims of ``path``, each row checked: its kind, the fields it needs, the selections it
    names and the {fields} its text uses."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise G2GError(f"cannot read claims {path}: {e}") from None
    selects = {name: _select(name, spec) for name, spec in data.get("select", {}).items()}
    valid = {f.name for f in dataclasses.fields(Claim)}
    out = []
    for i, row in enumerate(data.get("claim", [])):
        where = f"{path.name}, claim {i + 1} ({row.get('claim', '?')})"
        unknown = set(row) - valid
        if unknown:
            raise G2GError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(valid))}")
        kind = row.get("kind")
        lookup(KINDS, kind, f"kind in {where}")
        for need in ("claim", "datasets", "measured", *NEEDS[kind]):
            if need not in row and not (need == "verdict" and "verdicts" in row):
                raise G2GError(f"{where}: a {kind} claim needs {need}")
        _check_text(row["measured"], kind, where)
        for outcome, text in (row.get("verdicts") or {}).items():
            lookup({o: o for o in sorted(OUTCOMES.get(kind, ()))}, outcome, f"outcome in {where}")
            _check_text(text, kind, where)
        sel = {k: lookup(selects, row[k], f"selection in {where}") for k in ("of", "against") if k in row}
        out.append(Claim(**{**row, **sel, "datasets": tuple(row["datasets"])}))
    return out


def evaluate(claims: list[Claim], dataset: str, pools: Pools) -> list[Row]:
    """The rows of ``dataset``, in the file's order; claims whose cells are not there are left out
    (or say so, where the claim gives its ``missing`` text)."""
    rows = [KINDS[c.kind](c, dataset, pools) for c in claims if dataset in c.datasets]
    return [r for r in rows if r is not None]
