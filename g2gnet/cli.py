"""The ``g2g`` command line: argument parsing only; every subcommand calls one library function.

The options of ``g2g train`` are derived from the fields of ``g2gnet.config`` (name, type, help,
default), so a new config field is a new option without touching this file. User mistakes print
one line ``g2g: error: ...`` and exit with status 2 (SPEC §9).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from pathlib import Path

from .config import SECTIONS, Config, parse_dst
from .errors import G2GError
from .version import __version__

# CLI option prefix of each config section's fields (``--dst-interval``, ``--p-inter``).
_PREFIX = {"data": "", "model": "", "train": "", "dst": "dst-"}
_TITLES = {"data": "data", "model": "model options", "train": "training", "dst": "dynamic sparse training"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + message
        print(f"g2g: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(2)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def _int_or_word(text: str) -> int | str:
    return int(text) if text.strip().lstrip("-").isdigit() else text


def _optional_word(text: str) -> str | None:
    return None if text.lower() in ("none", "static") else text


def _argument(hint) -> dict:
    """argparse keywords for a field of type ``hint``."""
    options = set(typing.get_args(hint)) if isinstance(hint, types.UnionType) else {hint}
    options.discard(type(None))
    if options == {bool}:
        return {"action": argparse.BooleanOptionalAction}
    if options == {int}:
        return {"type": int, "metavar": "N"}
    if options == {float}:
        return {"type": float, "metavar": "X"}
    if options == {int, str}:
        return {"type": _int_or_word}
    if options == {str}:
        nullable = isinstance(hint, types.UnionType)
        return {"type": _optional_word if nullable else str}
    if all(typing.get_origin(t) is tuple for t in options):
        return {"type": _int_list, "metavar": "N,N,..."}
    raise TypeError(f"no CLI type for {hint}")  # pragma: no cover (a new kind of field)


def option_name(section: str, name: str) -> str:
    """The CLI option of config field ``section.name`` (e.g. ``--p-inter``, ``--dst-interval``)."""
    f = next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == name)
    return f.metadata.get("flag") or "--" + _PREFIX[section] + name.replace("_", "-")


def add_config_options(p: argparse.ArgumentParser) -> None:
    """One option per config field, defaulting to 'not given' so that ``--config`` + flags works."""
    for section, cls in SECTIONS.items():
        group = p.add_argument_group(_TITLES[section])
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            help_text = f.metadata["help"] + ("" if default is None else f" (default: {shown})")
            kw = _argument(hints[f.name])
            if "action" not in kw:
                kw["metavar"] = f.metadata.get("metavar") or kw.get("metavar") or f.name.upper()
            group.add_argument(option_name(section, f.name), dest=f"{section}.{f.name}", default=argparse.SUPPRESS,
                               help=help_text, **kw)
        if section == "dst":
            group.add_argument("--dst", dest="dst_pair", metavar="PRUNE:GROW", default=argparse.SUPPRESS,
                               help="shorthand for --dst-prune PRUNE --dst-grow GROW, e.g. magnitude:hebbian; "
                                    "'static' for none")


def config_from_args(args: argparse.Namespace) -> Config:
    """``--config`` (or the defaults) with every given option applied and checked."""
    base = Config()
    if getattr(args, "config", None):
        from .runs import read_config

        base = read_config(args.config)
    changes: dict[str, dict] = {}
    given = vars(args)
    if "dst_pair" in given:
        prune, grow = parse_dst(given["dst_pair"])
        changes["dst"] = {"prune": prune, "grow": grow}
    for key, value in given.items():
        if "." in key:
            section, name = key.split(".", 1)
            changes.setdefault(section, {})[name] = value
    return base.replace(**changes)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train one model and write a run directory",
                       description="Train one model (SPEC §5) and write its run directory (SPEC §6).")
    p.add_argument("--out", default=None, help="run directory (default: runs/DATASET-MODEL-sSEED-TIME)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--config", default=None, metavar="RUN_DIR/config.json",
                   help="start from a run's configuration; options given beside it override it")
    p.add_argument("--data-dir", default=None, help="dataset root (default: $G2G_DATA, cache, system, download)")
    add_config_options(p)
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from .runs import default_run_dir
    from .train import train

    cfg = config_from_args(args)
    if args.resume and not args.out:
        raise G2GError("--resume needs the --out directory of the run to continue")
    out = args.out or default_run_dir(cfg)
    summary = train(cfg, out, resume=args.resume, data_dir=args.data_dir)
    print(f"{cfg.data.dataset} {cfg.model.name} seed {cfg.train.seed}: test accuracy "
          f"{100 * summary['test_acc']:.2f}% ({summary['active_params']:,} active parameters, "
          f"{summary['seconds_per_epoch']:.1f} s/epoch) -> {out}")
    return 0


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="tables and plots from run directories",
                       description="Markdown tables (mean ± std over seeds, one row per configuration) and PNG "
                                   "plots from run directories; optionally differences paired by seed.")
    p.add_argument("runs", nargs="+", help="run directories, or folders searched for them")
    p.add_argument("--out", default=None, help="write report.md and plots here (default: print the table)")
    p.add_argument("--by", default=None,
                   help="config keys shown as columns, e.g. model.name,dst.prune (default: those that vary); "
                        "rows are still one configuration each")
    p.add_argument("--baseline", default=None, metavar="KEY=VALUE",
                   help="compare every row with the row where KEY=VALUE (e.g. model=dense), paired by seed")
    p.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True)
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> int:
    from .report import build_report

    by = [k.strip() for k in args.by.split(",") if k.strip()] if args.by else None
    text = build_report([Path(r) for r in args.runs], out=Path(args.out) if args.out else None, by=by,
                        baseline=args.baseline, plots=args.plots)
    print(text)
    return 0


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="time SparseLinear against nn.Linear",
                       description="Time SparseLinear against nn.Linear of the same shape in one process.")
    p.add_argument("--widths", type=_int_list, default=(1024, 2048, 4096))
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--inter-tile", type=int, default=1)
    p.add_argument("--epoch", default=None, metavar="MODELS",
                   help="also time whole training epochs of these models, e.g. dense,g2g-mixer")
    p.add_argument("--dataset", default="fashion-mnist", help="dataset for --epoch")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epoch-repeats", type=int, default=3)
    p.add_argument("--json", default=None, help="write the results here")
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args) -> int:
    from .bench import BenchConfig, run

    models = tuple(m.strip() for m in args.epoch.split(",") if m.strip()) if args.epoch else ()
    cfg = BenchConfig(widths=tuple(args.widths), batch=args.batch, device=args.device, dtype=args.dtype,
                      threads=args.threads, repeats=args.repeats, inter_tile=args.inter_tile,
                      epoch_models=models, dataset=args.dataset, epoch_repeats=args.epoch_repeats)
    run(cfg, json_path=Path(args.json) if args.json else None, data_dir=args.data_dir)
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
    parser = _Parser(prog="g2g", description="G2GNet: neuro-inspired sparse, modular neural networks.")
    parser.add_argument("--version", action="version", version=f"g2gnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_train, _add_report, _add_bench, _add_list):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a parse error already printed as one line
        return int(e.code or 0)
    try:
        return args.func(args)
    except G2GError as e:
        print(f"g2g: error: {e}", file=sys.stderr)
        return 130 if type(e).__name__ == "Interrupted" else 2
    except KeyboardInterrupt:
        print("g2g: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
