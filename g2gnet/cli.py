"""The ``g2g`` command line: argument parsing only; every subcommand calls one library function.

User mistakes print one line ``g2g: error: ...`` and exit with status 2 (SPEC §9).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .errors import G2GError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + message
        print(f"g2g: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(2)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one width")
    return values


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train one model and write a run directory",
                       description="Train one model (SPEC §5) and write its run directory (SPEC §6).")
    p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist | mnist | cifar10 | cifar100")
    p.add_argument("--model", default="g2g-mixer",
                   help="dense | dense-matched | er | g2g-index | g2g-random | g2g-mixer")
    p.add_argument("--epochs", type=int, default=None, help="default: 20 (F-MNIST, MNIST), 30 (CIFAR-10), 40 (CIFAR-100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run directory (default: runs/DATASET-MODEL-sSEED-TIME)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--data-dir", default=None, help="dataset root (default: $G2G_DATA, cache, system, download)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--val", type=int, default=0, help="hold out this many training images for validation")
    p.add_argument("--labels", default="fine", help="cifar100 label set: fine | coarse")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random crop + flip (default: on for CIFAR)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    g = p.add_argument_group("model options")
    g.add_argument("--hidden", type=_int_list, default=[1024, 1024, 1024], help="hidden widths, e.g. 1024,1024,1024")
    g.add_argument("--groups", type=int, default=8, help="ensembles per layer side (G)")
    g.add_argument("--p-intra", type=float, default=1.0)
    g.add_argument("--p-inter", type=float, default=0.15)
    g.add_argument("--frontend", default="none", help="none | patch")
    g.add_argument("--inter-tile", type=int, default=1, help="sample inter-group links in TxT tiles")
    d = p.add_argument_group("dynamic sparse training")
    d.add_argument("--dst", default=None, metavar="PRUNE:GROW",
                   help="e.g. magnitude:hebbian; prune: magnitude|random|hebbian, grow: hebbian|random|gradient")
    d.add_argument("--dst-interval", type=int, default=1000, help="optimizer steps between updates")
    d.add_argument("--dst-fraction", type=float, default=0.1, help="fraction of active links rewired")
    d.add_argument("--dst-decay", default="constant", help="constant | cosine")
    d.add_argument("--dst-stop", type=float, default=1.0, help="no updates after this fraction of training")
    d.add_argument("--dst-window", default="1", help="batches of activity per update: N or 'all'")
    d.add_argument("--dst-score", default="cosine", help="Hebbian score: cosine | pearson")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from .config import TrainConfig
    from .train import train

    keys = ("dataset", "model", "epochs", "seed", "batch_size", "lr", "weight_decay", "val", "labels",
            "augment", "device", "threads", "hidden", "groups", "p_intra", "p_inter", "frontend",
            "inter_tile", "dst", "dst_interval", "dst_fraction", "dst_decay", "dst_stop", "dst_window",
            "dst_score")
    cfg = TrainConfig(**{k: getattr(args, k) for k in keys})
    if args.resume and not args.out:
        raise G2GError("--resume needs the --out directory of the run to continue")
    # Without --out every run gets a new directory, so repeating a command never collides.
    out = args.out or time.strftime(f"runs/{args.dataset}-{args.model}-s{args.seed}-%Y%m%d-%H%M%S")
    summary = train(cfg, out, resume=args.resume, data_dir=args.data_dir)
    print(f"{cfg.dataset} {cfg.model} seed {cfg.seed}: test accuracy {100 * summary['test_acc']:.2f}% "
          f"({summary['active_params']:,} active parameters, {summary['seconds_per_epoch']:.1f} s/epoch) -> {out}")
    return 0


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="tables and plots from run directories",
                       description="Build Markdown tables (mean ± std over seeds) and PNG plots from runs.")
    p.add_argument("runs", nargs="+", help="run directories, or folders searched for them")
    p.add_argument("--out", default=None, help="write report.md and plots here (default: print the table)")
    p.add_argument("--by", default="dataset,model,dst", help="config keys that define a table row")
    p.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True)
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> int:
    from .report import build_report

    text = build_report([Path(r) for r in args.runs], out=Path(args.out) if args.out else None,
                        by=[k.strip() for k in args.by.split(",") if k.strip()], plots=args.plots)
    print(text)
    return 0


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="time SparseLinear against nn.Linear",
                       description="Time SparseLinear against nn.Linear of the same shape in one process.")
    p.add_argument("--widths", type=_int_list, default=[1024, 2048, 4096])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", help="float32 | bfloat16 (CUDA)")
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
    from .bench import epoch_times, run_bench

    results = run_bench(widths=args.widths, batch=args.batch, device=args.device, dtype=args.dtype,
                        threads=args.threads, repeats=args.repeats, inter_tile=args.inter_tile)
    if args.epoch:
        models = [m.strip() for m in args.epoch.split(",") if m.strip()]
        ep = epoch_times(models, args.dataset, repeats=args.epoch_repeats, batch_size=args.batch,
                         device=args.device, data_dir=args.data_dir, inter_tile=args.inter_tile)
        results["epochs"] = ep
        for m in models:
            print(f"{args.dataset} epoch, {m}: {ep['median_seconds'][m]:.2f} s "
                  f"(x{ep['speedup_vs_first'][m]:.2f} vs {models[0]})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _add_list(sub) -> None:
    p = sub.add_parser("list", help="list datasets, models and DST criteria")
    p.set_defaults(func=_cmd_list)


def _cmd_list(args) -> int:
    from .data import DATASETS
    from .models import MODELS

    print("datasets:", ", ".join(DATASETS))
    print("models:  ", ", ".join(MODELS))
    try:
        from .dst import GROW, PRUNE

        print("prune:   ", ", ".join(PRUNE))
        print("grow:    ", ", ".join(GROW))
    except ImportError:  # pragma: no cover
        pass
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="g2g", description="G2GNet: neuro-inspired sparse, modular neural networks.")
    from . import __version__

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
        return 2
    except KeyboardInterrupt:
        print("g2g: interrupted; the last checkpoint is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
