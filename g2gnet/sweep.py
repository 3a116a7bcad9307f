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

A cell's directory name is derived from its axis values (``g2g-mixer-p0.05-s1``), so it is stable
as grids grow. Finished cells (summary.json) are skipped, interrupted ones resume from their
checkpoint, a cell whose run directory another process holds (its lock) is left to it, and a
worker that dies with the sweep (SIGKILL included) loses only the epochs in flight.
"""

from __future__ import annotations

import ctypes
import fcntl
import itertools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .errors import G2GError
from .options import ArgParser, add_config_options, config_from_args

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class Cell:
    name: str
    argv: tuple[str, ...]  # g2g train options (without --out / --resume)
    config: Config


@dataclass
class Suite:
    out: Path
    cells: list[Cell]
    report: list[str]  # g2g report options of the closing report
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


def expand(fixed: dict, grids: list[dict], names: dict[str, str], parse) -> list[Cell]:
    """Every cell of the grids, in order; ``parse(argv) -> Config`` checks each one up front."""
    cells: dict[str, Cell] = {}
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
                cells[name] = Cell(name, argv, config)
    return list(cells.values())


def load_suite(path: Path | None, grid: list[str], fixed: list[str], out: str | None, parse) -> Suite:
    """A suite from a TOML file and/or ``--grid key=v1,v2`` / ``--set key=value`` options."""
    spec: dict = {}
    if path is not None:
        try:
            spec = tomllib.loads(path.read_text())
        except OSError as e:
            raise G2GError(f"cannot read suite {path}: {e.strerror or e}") from None
        except tomllib.TOMLDecodeError as e:
            raise G2GError(f"suite {path} is not valid TOML: {e}") from None
    valid = ("out", "report", "include", "names", "fixed", "grid")
    unknown = set(spec) - set(valid)
    if unknown:
        raise G2GError(f"suite {path}: unknown key(s) {', '.join(sorted(unknown))}; valid: {', '.join(valid)}")
    fixed_values = dict(spec.get("fixed", {}))
    fixed_values.update(_pairs(fixed, "--set", split=False))
    grids = list(spec.get("grid", []))
    if grid:
        extra = _pairs(grid, "--grid", split=True)
        grids = [{**g, **extra} for g in grids] if grids else [extra]
    out_dir = out or spec.get("out")
    if not out_dir:
        raise G2GError("a sweep needs an output directory: 'out' in the suite or --out")
    if not isinstance(spec.get("include", []), list):
        raise G2GError(f"suite {path}: include must be a list")
    cells = expand(fixed_values, grids, dict(spec.get("names", {})), parse)
    return Suite(Path(out_dir), cells, _report_options(spec.get("report", []), path),
                 [Path(p) for p in spec.get("include", [])])


def _report_options(report, path: Path | None) -> list[str]:
    """A suite's ``[report]`` table (``baseline``, ``by``) as options of the closing g2g report;
    the older form, a list of those options, is taken as it is."""
    if isinstance(report, list):
        return [str(a) for a in report]
    if not isinstance(report, dict):
        raise G2GError(f"suite {path}: report must be a table (baseline, by) or a list of g2g report options")
    unknown = set(report) - {"baseline", "by"}
    if unknown:
        raise G2GError(f"suite {path}: unknown report key(s) {', '.join(sorted(unknown))}; valid: baseline, by")
    by = report.get("by", [])
    by = ",".join(by) if isinstance(by, list) else str(by)
    return [*(["--baseline", str(report["baseline"])] if "baseline" in report else []), *(["--by", by] if by else [])]


def _literal(text: str):
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _pairs(items: list[str], what: str, split: bool) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise G2GError(f"{what} needs KEY=VALUE{',VALUE' if split else ''}, got {item!r}")
        out[key] = [_literal(v) for v in value.split(",")] if split else _literal(value)
    return out


def status(run_dir: Path) -> str:
    """done | busy (another process holds it) | partial (resumable) | new."""
    if (run_dir / "summary.json").exists():
        return "done"
    lock = run_dir / ".lock"
    if lock.exists():
        try:
            with open(lock) as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return "busy"
        except OSError:
            pass
    return "partial" if (run_dir / "config.json").exists() else "new"


def _die_with_parent() -> None:  # runs in the child before exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: workers outlive a killed sweep and finish their run
        pass


def _fmt_time(seconds: float) -> str:
    m = int(seconds // 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{int(seconds % 60):02d}s"


# The workers import the very g2gnet this sweep runs (``python -m g2gnet`` would put the current
# directory first on sys.path and run whatever checkout the sweep was started in).
_ROOT = str(Path(__file__).resolve().parent.parent)
G2G = (sys.executable, "-c", f"import sys; sys.path.insert(0, {_ROOT!r}); from g2gnet.cli import main; "
       "sys.exit(main())")


def run_sweep(suites: Suite | list[Suite], workers: int = 1, extra: list[str] = (), dry_run: bool = False,
              log=print, g2g: tuple[str, ...] | None = None, time_limit: float | None = None) -> list[str]:
    """Run the cells of the suites that are not done, in order, ``workers`` at a time; returns the
    names of the cells that failed. No cell starts after ``time_limit`` seconds (running ones
    finish). ``g2g`` is the command that runs ``g2g train`` (default ``G2G``; tests swap it)."""
    g2g = g2g or G2G
    suites = [suites] if isinstance(suites, Suite) else suites
    queue: list[tuple[Path, Cell]] = []
    for suite in suites:
        states = {c.name: status(suite.out / c.name) for c in suite.cells}
        counts = {s: sum(v == s for v in states.values()) for s in ("done", "busy", "partial", "new")}
        log(f"sweep {suite.out}: {len(suite.cells)} cells: {counts['done']} done, {counts['partial']} to resume, "
            f"{counts['new']} new, {counts['busy']} running elsewhere; {workers} worker(s)")
        for c in suite.cells:
            if states[c.name] in ("new", "partial"):
                queue.append((suite.out, c))
                if dry_run:
                    log(f"  {states[c.name]:8s} {c.name}: g2g train {' '.join(c.argv)}")
    if dry_run:
        return []
    for out in {out for out, _ in queue}:
        try:
            (out / "logs").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise G2GError(f"cannot create {out / 'logs'}: {e.strerror or e}") from None
    running: dict[Path, tuple[subprocess.Popen, float, object]] = {}
    failed: list[str] = []
    durations: list[float] = []
    finished, total, start = 0, len(queue), time.monotonic()
    try:
        while queue or running:
            while queue and len(running) < workers:
                if time_limit is not None and time.monotonic() - start > time_limit:
                    log(f"time limit reached: {len(queue)} cell(s) not started")
                    queue.clear()
                    break
                out, c = queue.pop(0)
                run_dir = out / c.name
                state = status(run_dir)
                if state in ("done", "busy"):
                    continue
                resume = ["--resume"] if state == "partial" else []
                cmd = [*g2g, "train", *c.argv, *extra, "--out", str(run_dir), *resume]
                f = open(out / "logs" / f"{c.name}.log", "a")
                proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
                running[run_dir] = (proc, time.monotonic(), f)
            time.sleep(0.5)
            for run_dir, (proc, t0, f) in list(running.items()):
                if proc.poll() is None:
                    continue
                f.close()
                del running[run_dir]
                finished += 1
                took = time.monotonic() - t0
                if proc.returncode == 0:
                    durations.append(took)
                    eta = sum(durations) / len(durations) * (len(queue) + len(running)) / workers
                    log(f"[{finished}/{total}] {run_dir} done in {_fmt_time(took)}; ETA {_fmt_time(eta)}")
                else:
                    failed.append(str(run_dir))
                    log_file = run_dir.parent / "logs" / f"{run_dir.name}.log"
                    tail = log_file.read_text(errors="replace").strip().splitlines()[-1:]
                    log(f"[{finished}/{total}] {run_dir} FAILED (exit {proc.returncode}): {' '.join(tail)}")
    finally:
        for proc, _, f in running.values():  # Ctrl-C: stop the workers; their checkpoints remain
            proc.terminate()
            proc.wait()
            f.close()
    return failed


def cell_parser():
    """``argv -> Config`` with the options of ``g2g train``: every cell is checked before any runs."""
    parser = ArgParser(prog="g2g sweep cell", add_help=False)
    add_config_options(parser)

    def parse(argv: list[str]) -> Config:
        try:
            return config_from_args(parser.parse_args(argv))
        except G2GError as e:
            raise G2GError(f"cell '{' '.join(argv)}': {e}") from None

    return parse
