"""``g2g sweep``: the cells of an experiment grid as ``g2g train`` runs in worker processes (SPEC §10).

A suite is a TOML file (committed under ``suites/``)::

    out = "results/cifar10/table1"          # run directories go here, one per cell
    names = { p-inter = "p" }               # short name parts of numeric axes (optional)

    [report]                                # the closing g2g report's options (optional)
    baseline = "model.name=dense"           # (the older form, report = ["--baseline", "..."], works too)
    by = ["model.name"]

    [fixed]                                 # options of every cell (g2g train option names)
    dataset = "cifar10"

    [[grid]]                                # one product of axes; several grids may follow
    model = ["dense", "er", "g2g-mixer"]
    seed = [0, 1, 2]

Everything is checked before any cell runs: the suite's shape, every cell's options and names
(model, dataset, DST criteria) and the closing report's options. ``--grid KEY=V1,V2`` replaces the
suite's axis of that key; nothing is silently dropped: one ``--grid`` key given twice, a ``--set``
of a key that a grid varies (the axis would override it in every cell), and one configuration
(and seed) under two cell names (it would train twice) are errors.

A cell's directory name is derived from its axis values (``g2g-mixer-p0.05-s1``), so it is stable
as grids grow; but a cell *is* its full resolved configuration. A directory of that name that
holds a run of another configuration (finished or not; device and threads aside) is an error
before anything runs, naming the cell and the keys that differ: it is never reported as the
requested cell, and it is not silently replaced either (move it away, or choose another --out).

Finished cells (summary.json) are skipped, interrupted ones resume from their checkpoint (the
log says when a cell resumes under changed code), and a cell that another process holds (its run
lock, or another sweep's claim) is left to it: the sweep waits for it before it ends, and takes it
over if that process stops without finishing it. A worker dies with the sweep (SIGKILL included)
and loses only the epochs in flight.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import math
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .errors import G2GError
from .options import ArgParser, add_config_options, config_from_args
from .progress import format_duration
from .runs import RunDir, source_digest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class Cell:
    name: str
    argv: tuple[str, ...]  # g2g train options (without --out / --resume)
    config: Config  # resolved (``train.check_config``): what the cell's config.json must hold


@dataclass(frozen=True)
class ReportOptions:
    """The closing ``g2g report`` of a suite (its ``report`` list, checked when the suite loads)."""

    baseline: str | None = None
    by: tuple[str, ...] | None = None


@dataclass
class Suite:
    out: Path
    cells: list[Cell]
    report: ReportOptions
    include: list[Path]  # other run directories the closing report reads (e.g. shared baselines)


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def _argv(key: str, value) -> list[str]:
    """``g2g train`` options for one key = value of a suite."""
    if isinstance(value, bool):
        return [_option(key) if value else "--no-" + key.replace("_", "-")]
    if isinstance(value, list):
        return [_option(key), ",".join(map(str, value))]
    return [_option(key), str(value)]


def _name_part(key: str, value, names: dict[str, str]) -> str:
    if isinstance(value, str):
        return value.replace(":", "-").replace("/", "-")
    prefix = names.get(key.replace("_", "-"), key.replace("_", "-"))
    if isinstance(value, bool):
        return prefix if value else f"no-{prefix}"
    if isinstance(value, list):
        return prefix + "x".join(map(str, value))
    return f"{prefix}{value}"


def _same_run(config: Config) -> str:
    """What makes two cells one run: the identity of their configuration and the seed (device and
    threads aside, as ``runs.config_differences`` compares them)."""
    return json.dumps({**config.identity(), "seed": config.train.seed}, sort_keys=True)


def expand(fixed: dict, grids: list[dict], names: dict[str, str], parse) -> list[Cell]:
    """Every cell of the grids, in order; ``parse(argv) -> Config`` checks each one up front.
    One configuration (and seed) under two names is an error: it would train twice."""
    cells: dict[str, Cell] = {}
    runs: dict[str, str] = {}  # _same_run -> the name of its cell
    for grid in grids or [{}]:
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise G2GError(f"grid axis {key!r} must be a non-empty list, got {values!r}")
        axes = [k for k in grid if k != "seed"]
        seeds = grid.get("seed", [fixed.get("seed", 0)])
        for combo in itertools.product(*(grid[k] for k in axes)):
            for seed in seeds:
                values = {**fixed, **dict(zip(axes, combo)), "seed": seed}
                argv = tuple(a for k, v in values.items() for a in _argv(k, v))
                parts = [_name_part(k, v, names) for k, v in zip(axes, combo)] or ["run"]
                name = "-".join(parts) + f"-s{seed}"
                config = parse(list(argv))
                old = cells.get(name)
                if old is not None and old.config != config:
                    raise G2GError(f"two different cells would both be named {name}; add a names entry")
                other = runs.setdefault(_same_run(config), name)
                if other != name:
                    raise G2GError(f"cells {other} and {name} are one configuration (seed {seed}): it would be "
                                   f"trained twice; drop one of them from the grids (an option a cell's model "
                                   f"does not read counts as its default: give it in a grid of the models "
                                   f"that read it)")
                cells[name] = Cell(name, argv, config)
    return list(cells.values())


# -- the suite file ------------------------------------------------------------------------------
def _scalar(v) -> bool:
    return isinstance(v, (str, int, float, bool))


def _value(v) -> bool:  # an option's value: a scalar or a list of scalars (e.g. hidden)
    return _scalar(v) or (isinstance(v, list) and all(_scalar(x) for x in v))


def _strings(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


# The top-level keys of a suite: what each must be, checked before anything else is read.
_SUITE_KEYS = {
    "out": (lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
    "report": (lambda v: _strings(v) or (isinstance(v, dict) and set(v) <= {"baseline", "by"}),
               "a table (baseline, by) or a list of strings (g2g report options)"),
    "include": (_strings, "a list of strings (run directories)"),
    "names": (lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
              'a table of strings ({ key = "short" })'),
    "fixed": (lambda v: isinstance(v, dict), "a table ([fixed])"),
    "grid": (lambda v: isinstance(v, list) and all(isinstance(g, dict) for g in v), "an array of tables ([[grid]])"),
}


def _kind(v) -> str:
    kind = {dict: "a table", list: "a list", str: "a string", bool: "a boolean"}.get(type(v), type(v).__name__)
    shown = repr(v)
    return f"{kind} {shown[:60] + '...' if len(shown) > 60 else shown}"


def _check_spec(spec: dict, where: str) -> None:
    unknown = set(spec) - set(_SUITE_KEYS)
    if unknown:
        raise G2GError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; valid: {', '.join(_SUITE_KEYS)}")
    for key, (ok, expect) in _SUITE_KEYS.items():
        if key in spec and not ok(spec[key]):
            raise G2GError(f"{where}: {key} must be {expect}, got {_kind(spec[key])}")
    for key, value in spec.get("fixed", {}).items():
        if not _value(value):
            raise G2GError(f"{where}: fixed.{key} must be a value or a list of values, got {_kind(value)}")
    for grid in spec.get("grid", []):
        for key, values in grid.items():
            if isinstance(values, list) and not all(_value(v) for v in values):  # expand checks the rest
                raise G2GError(f"{where}: grid axis {key} must be a list of values, got {_kind(values)}")


def _read_spec(path: Path) -> dict:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise G2GError(f"cannot read suite {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise G2GError(f"suite {path} is not UTF-8 text (byte {e.start}: {e.reason})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise G2GError(f"suite {path} is not valid TOML: {e}") from None


def report_options(report: dict | list[str], where: str) -> ReportOptions:
    """A suite's report settings, checked: a ``[report]`` table (``baseline``, ``by``) or, the
    older form, a list of g2g report options."""
    if isinstance(report, dict):
        by = report.get("by")
        if isinstance(by, str):
            by = by.split(",")
        if by is not None and not (isinstance(by, list) and all(isinstance(k, str) for k in by)):
            raise G2GError(f"{where}: report.by must be a list of keys or a comma-separated string, got {by!r}")
        baseline = report.get("baseline")
        if baseline is not None and not isinstance(baseline, str):
            raise G2GError(f"{where}: report.baseline must be a string KEY=VALUE, got {baseline!r}")
        return ReportOptions(baseline, tuple(k.strip() for k in by if k.strip()) or None if by else None)
    argv = report
    parser = ArgParser(prog="suite report", add_help=False)
    parser.add_argument("--baseline", default=None)
    parser.add_argument("--by", default=None)
    try:
        opts = parser.parse_args(argv)
    except G2GError as e:
        raise G2GError(f"{where}: report: {e}") from None
    by = tuple(k.strip() for k in opts.by.split(",") if k.strip()) if opts.by else None
    return ReportOptions(opts.baseline, by)


def load_suite(path: Path | None, grid: list[str], fixed: list[str], out: str | None, parse) -> Suite:
    """A suite from a TOML file and/or ``--grid key=v1,v2`` / ``--set key=value`` options."""
    spec: dict = {}
    where = f"suite {path}" if path is not None else "sweep"
    if path is not None:
        spec = _read_spec(path)
        _check_spec(spec, where)
    fixed_values = dict(spec.get("fixed", {}))
    given = _pairs(fixed, "--set", split=False)
    fixed_values.update(given)
    grids = list(spec.get("grid", []))
    extra = _pairs(grid, "--grid", split=True)
    for key in given:  # a grid axis would override it in every cell of that grid: never silently
        axis = next((k for g in [extra, *grids] for k in g if _overlap(key, k)), None)
        if axis is not None:
            source = "a --grid axis" if axis in extra else f"a grid axis of {where}"
            raise G2GError(f"--set {key}: {axis} is {source}, which would override it in every cell; give its "
                           f"values as --grid {axis}=V1,V2,... (which replaces the suite's axis) instead")
    if extra:  # a --grid axis replaces the suite's axis of that key
        grids = [{**{k: v for k, v in g.items() if not any(_overlap(k, e) for e in extra)}, **extra}
                 for g in grids] if grids else [extra]
    out_dir = out or spec.get("out")
    if not out_dir:
        raise G2GError("a sweep needs an output directory: 'out' in the suite or --out")
    report = report_options(spec.get("report", []), where)
    cells = expand(fixed_values, grids, dict(spec.get("names", {})), parse)
    return Suite(Path(out_dir), cells, report, [Path(p) for p in spec.get("include", [])])


def _literal(text: str):
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _overlap(a: str, b: str) -> bool:
    """Whether suite keys ``a`` and ``b`` set the same option (``batch_size`` is ``batch-size``;
    ``dst`` sets ``dst-prune`` and ``dst-grow``)."""
    a, b = _option(a), _option(b)  # the g2g train option each sets
    return a == b or {a, b} in ({"--dst", "--dst-prune"}, {"--dst", "--dst-grow"})


def _pairs(items: list[str], what: str, split: bool) -> dict:
    """``KEY=VALUE`` (``--set``: the last of a key counts, as for any option) or ``KEY=V1,V2``
    options (``--grid``: a key given twice is an error, since neither keeping the last axis nor
    merging them would be right every time)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise G2GError(f"{what} needs KEY=VALUE{',VALUE' if split else ''}, got {item!r}")
        twice = next((k for k in out if _overlap(k, key)), None) if split else None
        if twice is not None:
            raise G2GError(f"{what} {twice}=... and {what} {key}=... are one axis given twice; give all its "
                           f"values in one: {what} {key}=V1,V2,...")
        out[key] = [_literal(v) for v in value.split(",")] if split else _literal(value)
    return out


# -- running -----------------------------------------------------------------------------------------
def _die_with_parent() -> None:  # runs in the child before exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: workers outlive a killed sweep and finish their run
        pass


# The workers import the very g2gnet this sweep runs (``python -m g2gnet`` would put the current
# directory first on sys.path and run whatever checkout the sweep was started in).
_ROOT = str(Path(__file__).resolve().parent.parent)
G2G = (sys.executable, "-c", f"import sys; sys.path.insert(0, {_ROOT!r}); from g2gnet.cli import main; "
       "sys.exit(main())")


@dataclass
class _Job:
    run: RunDir  # holds the claim while the worker runs
    cell: Cell
    proc: subprocess.Popen
    started: float
    log_file: object


def _unique_cells(suites: list[Suite]) -> list[tuple[Path, Cell]]:
    """Every cell once, by its run directory: suites listed twice, or sharing an out, queue a
    shared cell once (a different configuration under one directory is an error)."""
    seen: dict[Path, tuple[Path, Cell]] = {}
    for suite in suites:
        for cell in suite.cells:
            run_dir = suite.out / cell.name
            key = run_dir.resolve()
            if key in seen and seen[key][1].config != cell.config:
                raise G2GError(f"two suites define {run_dir} with different configurations")
            seen.setdefault(key, (run_dir, cell))
    return list(seen.values())


def _check_existing(cells: list[tuple[Path, Cell]], states: dict[Path, str]) -> None:
    """S21: a run directory of a cell's name holding another configuration is an error."""
    wrong = []
    for run_dir, cell in cells:
        if states[run_dir] != "new":
            diff = RunDir(run_dir).differences(cell.config)
            if diff:
                wrong.append(f"{run_dir} holds a run of another configuration ({'; '.join(diff)})")
    if wrong:
        more = f", and {len(wrong) - 3} more cell(s)" if len(wrong) > 3 else ""
        raise G2GError(f"{', '.join(wrong[:3])}{more}: a sweep cell is its whole configuration, so these runs are "
                       "not the requested cells; move them away or choose another --out")


def run_sweep(suites: Suite | list[Suite], workers: int = 1, extra: list[str] = (), dry_run: bool = False,
              log=print, g2g: tuple[str, ...] | None = None, time_limit: float | None = None) -> list[str]:
    """Run the cells of the suites that are not done, in order, ``workers`` at a time; returns the
    run directories of the cells that failed. No cell starts after ``time_limit`` seconds (running
    ones finish). Cells that another process holds are waited for (and taken over if it stops
    without finishing them). ``g2g`` is the command that runs ``g2g train`` (default ``G2G``)."""
    if workers < 1:
        raise G2GError(f"--workers must be >= 1, got {workers}")
    # 0 is allowed: no cell starts, the closing report is written (scripts/report_all.sh uses it)
    if time_limit is not None and not (math.isfinite(time_limit) and time_limit >= 0):
        raise G2GError(f"--time-limit must be a number of seconds >= 0, got {time_limit}")
    g2g = g2g or G2G
    suites = [suites] if isinstance(suites, Suite) else suites
    cells = _unique_cells(suites)
    states = {run_dir: RunDir(run_dir).status() for run_dir, _ in cells}
    _check_existing(cells, states)
    code = source_digest()
    for suite in suites:
        mine = [states[suite.out / c.name] for c in suite.cells]
        counts = {s: mine.count(s) for s in ("done", "busy", "partial", "new")}
        log(f"sweep {suite.out}: {len(suite.cells)} cells: {counts['done']} done, {counts['partial']} to resume, "
            f"{counts['new']} new, {counts['busy']} running elsewhere; {workers} worker(s)")
    queue = [(d, c) for d, c in cells if states[d] in ("new", "partial")]
    waiting = [(d, c) for d, c in cells if states[d] == "busy"]
    for run_dir, cell in queue:
        if dry_run:
            log(f"  {states[run_dir]:8s} {cell.name}: g2g train {' '.join(cell.argv)}")
        before = RunDir(run_dir).last_code_version() if states[run_dir] == "partial" else None
        if before is not None and before != code:
            log(f"  {run_dir} resumes under changed code (source {before[:12]} at its last start, now "
                f"{code[:12]}): its results will mix code versions")
    if dry_run:
        return []
    if waiting:
        log(f"  waiting for {len(waiting)} cell(s) that another process holds: "
            f"{', '.join(str(d) for d, _ in waiting)}")
    for out in {d.parent for d, _ in queue + waiting}:  # a held cell may come back to this sweep
        try:
            (out / "logs").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise G2GError(f"cannot create {out / 'logs'}: {e.strerror or e}") from None
    return _Sweep(queue, waiting, workers, list(extra), log, g2g, time_limit).run()


class _Sweep:
    """The scheduling loop of one ``run_sweep``: queued cells start as workers free up; cells held
    elsewhere are polled until their holder lets go."""

    def __init__(self, queue, waiting, workers: int, extra: list[str], log, g2g, time_limit) -> None:
        self.queue, self.waiting = list(queue), list(waiting)
        self.workers, self.extra, self.log, self.g2g, self.time_limit = workers, extra, log, g2g, time_limit
        self.running: list[_Job] = []
        self.failed: list[str] = []
        self.durations: list[float] = []
        self.finished, self.total, self.start = 0, len(queue) + len(waiting), time.monotonic()

    def run(self) -> list[str]:
        try:
            while self.queue or self.running or self.waiting:
                if self.time_limit is not None and time.monotonic() - self.start > self.time_limit:
                    self._stop_starting()
                while self.queue and len(self.running) < self.workers:
                    self._start(*self.queue.pop(0))
                if self.queue or self.running or self.waiting:
                    time.sleep(0.5)
                self._reap()
                self._poll_waiting()
        finally:
            for job in self.running:  # Ctrl-C: stop the workers; their checkpoints remain
                job.proc.terminate()
                job.proc.wait()
                job.log_file.close()
                job.run.close()
        return self.failed

    def _stop_starting(self) -> None:
        if self.queue:
            self.log(f"time limit reached: {len(self.queue)} cell(s) not started")
        if self.waiting:
            self.log(f"time limit reached: {len(self.waiting)} cell(s) still running elsewhere, not waited for: "
                     f"{', '.join(str(d) for d, _ in self.waiting)}")
        self.queue.clear()
        self.waiting.clear()

    def _done(self, run_dir: Path, note: str) -> None:
        self.finished += 1
        self.log(f"[{self.finished}/{self.total}] {run_dir} {note}")

    def _fail(self, run_dir: Path, why: str) -> None:
        self.failed.append(str(run_dir))
        self._done(run_dir, f"FAILED {why}")

    def _start(self, run_dir: Path, cell: Cell) -> None:
        run = RunDir(run_dir)
        try:
            claimed = run.claim()
        except G2GError as e:
            self._fail(run_dir, f"({e})")
            return
        if not claimed:  # another sweep is starting it
            self.waiting.append((run_dir, cell))
            return
        state = run.status()  # again, now that no other sweep can start it
        if state in ("done", "busy"):
            run.close()
            if state == "done":
                self._finished_elsewhere(run_dir, cell)
            else:
                self.waiting.append((run_dir, cell))
            return
        try:
            diff = run.differences(cell.config)  # started elsewhere since the sweep began
            if diff:
                raise G2GError(f"it now holds a run of another configuration ({'; '.join(diff)})")
            log_path = run_dir.parent / "logs" / f"{cell.name}.log"
            try:
                log_file = open(log_path, "a")
            except OSError as e:
                raise G2GError(f"cannot write its log {log_path}: {e.strerror or e}") from None
        except G2GError as e:
            run.close()
            self._fail(run_dir, f"({e})")
            return
        resume = ["--resume"] if state == "partial" else []
        cmd = [*self.g2g, "train", *cell.argv, *self.extra, "--out", str(run_dir), *resume]
        try:
            proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        except OSError as e:
            log_file.close()
            run.close()
            self._fail(run_dir, f"(cannot start {cmd[0]}: {e.strerror or e})")
            return
        self.running.append(_Job(run, cell, proc, time.monotonic(), log_file))

    def _reap(self) -> None:
        for job in [j for j in self.running if j.proc.poll() is not None]:
            self.running.remove(job)
            job.log_file.close()
            job.run.close()
            run_dir, took = job.run.path, time.monotonic() - job.started
            if job.proc.returncode == 0:
                self.durations.append(took)
                left = len(self.queue) + len(self.running)
                eta = sum(self.durations) / len(self.durations) * left / self.workers
                self._done(run_dir, f"done in {format_duration(took)}; ETA {format_duration(eta)}")
            elif job.run.status() == "busy":  # another process took it between our check and the worker's lock
                self.log(f"  {run_dir} is held by {job.run.holder()}; waiting for it")
                self.waiting.append((run_dir, job.cell))
            else:
                log_file = run_dir.parent / "logs" / f"{run_dir.name}.log"
                try:
                    tail = log_file.read_text(errors="replace").strip().splitlines()[-1:]
                except OSError:
                    tail = []
                self._fail(run_dir, f"(exit {job.proc.returncode}): {' '.join(tail)}")

    def _poll_waiting(self) -> None:
        for run_dir, cell in list(self.waiting):
            state = RunDir(run_dir).status()
            if state == "busy":
                continue
            self.waiting.remove((run_dir, cell))
            if state == "done":
                self._finished_elsewhere(run_dir, cell)
            else:  # its holder stopped without finishing it: this sweep continues it
                self.queue.append((run_dir, cell))

    def _finished_elsewhere(self, run_dir: Path, cell: Cell) -> None:
        diff = RunDir(run_dir).differences(cell.config)
        if diff:
            self._fail(run_dir, f"(finished elsewhere with another configuration: {'; '.join(diff)})")
        else:
            self._done(run_dir, "done (by another process)")


def cell_parser():
    """``argv -> Config`` with the options of ``g2g train``: every cell is checked before any runs,
    names included (model, dataset, DST criteria), and resolved as ``g2g train`` resolves it."""
    from .train import check_config

    parser = ArgParser(prog="g2g sweep cell", add_help=False)
    add_config_options(parser)

    def parse(argv: list[str]) -> Config:
        try:
            return check_config(config_from_args(parser.parse_args(argv)))
        except G2GError as e:
            raise G2GError(f"cell '{' '.join(argv)}': {e}") from None

    return parse
