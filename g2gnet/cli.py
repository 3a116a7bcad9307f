"""The ``g2g`` command line: argument parsing only; every subcommand calls one library function.

The options of ``g2g train`` are derived from the fields of ``g2gnet.config`` (name, type, help,
default), and those of ``g2g bench`` from ``bench_config.BenchConfig``, so a new field is a new option
without touching this file. User mistakes print
one line ``g2g: error: ...`` and exit with status 2 (SPEC §9).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from .errors import G2GError
from .options import ArgParser, add_config_options, add_knob_options, config_from_args, knob_values
from .version import __version__


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train one model and write a run directory",
                       description="Train one model (SPEC §5) and write its run directory (SPEC §6).")
    p.add_argument("--out", default=None, help="run directory (default: runs/DATASET-MODEL-sSEED-TIME)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--config", default=None, metavar="RUN_DIR/config.json",
                   help="start from a run's configuration; options given beside it override it")
    p.add_argument("--data-dir", default=None, help="dataset root (default: $G2G_DATA, cache, system, download)")
    p.add_argument("--tensorboard", action="store_true",
                   help="mirror the metrics into RUN_DIR/tensorboard (needs the tensorboard package)")
    add_config_options(p)
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from .distributed import world_from_env
    from .runs import default_run_dir
    from .train import train

    cfg = config_from_args(args)
    if args.resume and not args.out:
        raise G2GError("--resume needs the --out directory of the run to continue")
    out = args.out or default_run_dir(cfg)
    summary = train(cfg, out, resume=args.resume, data_dir=args.data_dir, tensorboard=args.tensorboard)
    if not world_from_env().main:  # under torchrun rank 0 reports
        return 0
    print(f"{cfg.data.dataset} {cfg.model.name} seed {cfg.train.seed}: test accuracy "
          f"{100 * summary.test_acc:.2f}% ({summary.active_params:,} active parameters, "
          f"{summary.seconds_per_epoch:.1f} s/epoch) -> {out}")
    return 0


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="tables and plots from run directories",
                       description="Markdown tables (mean ± std over seeds, one row per configuration) and PNG "
                                   "plots from run directories; optionally differences paired by seed.")
    p.add_argument("runs", nargs="+", help="run directories, or folders searched for them")
    p.add_argument("--out", default=None, help="write report.md and plots here (default: print the table)")
    p.add_argument("--by", default=None, metavar="KEYS",
                   help="config keys (section.field) shown as columns, e.g. model.name,model.p_inter (default: "
                        "those that vary); rows are still one configuration each")
    p.add_argument("--baseline", default=None, metavar="KEY=VALUE",
                   help="compare every row with the row where KEY=VALUE[,KEY=VALUE] (e.g. model.name=dense), "
                        "paired by seed")
    p.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True)
    # The study's document (RESULTS.md) moved out of the library; the old flag says where to.
    p.add_argument("--results", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> int:
    from .report import build_report
    from .report.keys import parse_by

    if args.results:
        raise G2GError("g2g report --results moved out of the library: run "
                       f"`python -m studies.g2gnet_paper {args.runs[0]} {args.results}` in the repository")
    text = build_report([Path(r) for r in args.runs], out=Path(args.out) if args.out else None, by=parse_by(args.by),
                        baseline=args.baseline, plots=args.plots)
    print(text)
    return 0


def _add_bench(sub) -> None:
    from .bench_config import BenchConfig

    p = sub.add_parser("bench", help="time G2G against dense: a layer, a whole model, training epochs",
                       description="Time G2G against dense in one process, interleaved: SparseLinear against "
                                   "nn.Linear of the same shape, a whole model against the dense MLP (training "
                                   "and inference rows), and training epochs of models or of any run's "
                                   "configuration against dense at the same widths. Every row shows the median "
                                   "repeat: speed-up = dense time / G2G time of the times shown.")
    # Every option but the three below is a BenchConfig knob (its default, check and help live there).
    add_knob_options(p.add_argument_group("what to time and how"), BenchConfig,
                     extra={"epoch_configs": {"type": str, "nargs": "+", "action": "extend"}})
    p.add_argument("--data-dir", default=None, help="dataset root of the epoch timings "
                                                     "(default: $G2G_DATA, cache, system, download)")
    p.add_argument("--json", default=None, metavar="FILE", help="write every result here (JSON)")
    p.add_argument("--epoch-json", default=None, metavar="FILE",
                   help="write the epoch timings here as an epoch-speed document (JSON)")
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args) -> int:
    from .bench import run
    from .bench_config import BenchConfig

    cfg = BenchConfig(**knob_values(args, BenchConfig))
    run(cfg, json_path=Path(args.json) if args.json else None, data_dir=args.data_dir,
        epoch_json=Path(args.epoch_json) if args.epoch_json else None)
    return 0


def _add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="run the cells of an experiment grid in worker processes",
                       description="Run a grid of g2g train cells (a suite file under suites/ and/or --grid "
                                   "axes): finished cells are skipped, interrupted ones resumed; ends with g2g "
                                   "report.")
    p.add_argument("suites", nargs="*", default=[], help="suite TOML files (see suites/); their cells share "
                                                          "the workers")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="an axis (g2g train option name), e.g. --grid model=dense,er --grid seed=0,1,2")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a fixed option of every cell")
    p.add_argument("--out", default=None, help="directory of the run directories (default: the suite's out)")
    p.add_argument("--workers", type=int, default=1, help="cells run at once")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per worker")
    p.add_argument("--device", default=None, help="device of every worker (not part of a cell's identity)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--dry-run", action="store_true", help="list the cells to run and stop")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="start no cell after this long (running cells finish; a positive number)")
    p.add_argument("--no-report", dest="report", action="store_false", help="skip the closing g2g report")
    p.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args) -> int:
    from .report import build_report
    from .sweep import cell_parser, load_suite, run_sweep

    if args.threads is not None and args.threads < 1:  # --workers and --time-limit: run_sweep checks them
        raise G2GError(f"--threads must be >= 1, got {args.threads}")
    if not args.suites and not args.grid:
        raise G2GError("give a suite file or at least one --grid axis")
    if len(args.suites) > 1 and (args.grid or args.set or args.out):
        raise G2GError("--grid, --set and --out apply to a single suite")
    parse = cell_parser()
    suites = [load_suite(Path(s) if s else None, args.grid, args.set, args.out, parse) for s in args.suites or [None]]
    extra = [*(["--threads", str(args.threads)] if args.threads else []),
             *(["--device", args.device] if args.device else []),
             *(["--data-dir", args.data_dir] if args.data_dir else [])]
    failed = run_sweep(suites, args.workers, extra, dry_run=args.dry_run, time_limit=args.time_limit)
    if failed:
        raise G2GError(f"{len(failed)} cell(s) failed: {', '.join(failed)} (each has a log in logs/ beside it)")
    if args.report and not args.dry_run:
        reports = {(s.out.resolve(), s.report, tuple(s.include)): s for s in suites}  # a suite listed twice: one
        for suite in reports.values():
            by = list(suite.report.by) if suite.report.by else None
            print(build_report([suite.out, *suite.include], out=suite.out, by=by,
                               baseline=suite.report.baseline))
    return 0


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="test accuracy of a trained run's model",
                       description="Load a run's model (config.json + checkpoint.pt) and evaluate it on the test "
                                   "set; says which epoch of how many the checkpoint holds.")
    p.add_argument("run", help="run directory")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--allow-partial", action="store_true",
                   help="evaluate the checkpoint of a run that is still training (an earlier epoch's model)")
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args) -> int:
    from .load import evaluate_run

    print(evaluate_run(args.run, args.data_dir, args.device, allow_partial=args.allow_partial).line())
    return 0


def _add_list(sub) -> None:
    p = sub.add_parser("list", help="list datasets, models and DST criteria")
    p.set_defaults(func=_cmd_list)


def _cmd_list(args) -> int:
    from .data import DATASETS
    from .dst import GROW, PRUNE
    from .models import FRONTENDS, MODELS

    print("datasets: ", ", ".join(DATASETS))
    print("models:   ", ", ".join(MODELS))
    print("frontends:", ", ".join(FRONTENDS))
    print("prune:    ", ", ".join(PRUNE))
    print("grow:     ", ", ".join(GROW))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = ArgParser(prog="g2g", description="G2GNet: neuro-inspired sparse, modular neural networks.")
    parser.add_argument("--version", action="version", version=f"g2gnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgParser)
    for add in (_add_train, _add_sweep, _add_eval, _add_report, _add_bench, _add_list):
        add(sub)
    return parser


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"g2g: warning: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    try:
        with warnings.catch_warnings():  # a command's warnings as one line each, as its errors
            warnings.showwarning = _warning_line
            args = build_parser().parse_args(argv)
            return args.func(args)
    except SystemExit as e:  # --help, --version
        return int(e.code or 0)
    except G2GError as e:
        print(f"g2g: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("g2g: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
