"""Reports from run directories only (SPEC §6): Markdown tables of mean ± std over seeds, and
PNG plots (accuracy vs density, learning curves, topology over training, mask pictures).

Uses the standard library for tables; matplotlib is imported only to draw plots.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from .errors import G2GError

# Config keys that never define a row: they change where/how fast a run ran, not what it is.
_NOT_ROW_KEYS = {"seed", "device", "threads"}


@dataclass
class RunRecord:
    path: Path
    config: dict
    summary: dict
    metrics: list[dict] = field(default_factory=list)


def find_runs(paths: list[Path]) -> list[RunRecord]:
    """Run directories (those with config.json and summary.json) at or below the given paths."""
    dirs: list[Path] = []
    for p in paths:
        if not p.exists():
            raise G2GError(f"{p} does not exist")
        if (p / "summary.json").exists():
            dirs.append(p)
        else:
            dirs.extend(sorted(s.parent for s in p.rglob("summary.json")))
    if not dirs:
        raise G2GError(f"no finished runs (summary.json) under {', '.join(map(str, paths))}")
    records = []
    for d in dirs:
        try:
            config = json.loads((d / "config.json").read_text())
            summary = json.loads((d / "summary.json").read_text())
            metrics_path = d / "metrics.jsonl"
            metrics = [json.loads(l) for l in metrics_path.read_text().splitlines() if l.strip()] \
                if metrics_path.exists() else []
        except (OSError, json.JSONDecodeError) as e:
            raise G2GError(f"run directory {d} is unreadable: {e}") from None
        records.append(RunRecord(d, config, summary, metrics))
    return records


def _row_keys(records: list[RunRecord], by: list[str] | None) -> list[str]:
    if by:
        return by
    keys = sorted({k for r in records for k in r.config} - _NOT_ROW_KEYS)
    return [k for k in keys if len({json.dumps(r.config.get(k)) for r in records}) > 1] or ["model"]


def group_runs(records: list[RunRecord], by: list[str]) -> dict[tuple, list[RunRecord]]:
    groups: dict[tuple, list[RunRecord]] = {}
    for r in records:
        key = tuple(json.dumps(r.config.get(k)) for k in by)
        groups.setdefault(key, []).append(r)
    return groups


def mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def _fmt_key(v: str) -> str:
    value = json.loads(v)
    return "static" if value is None else str(value)


def table(records: list[RunRecord], by: list[str] | None = None) -> str:
    """Markdown table: one row per configuration, test accuracy mean ± std (sample std) over seeds."""
    keys = _row_keys(records, by)
    header = [*keys, "n", "test acc (%)", "active params", "density", "s/epoch"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, runs in group_runs(records, keys).items():
        acc_m, acc_s = mean_std([100 * r.summary["test_acc"] for r in runs])
        params = statistics.fmean(r.summary["active_params"] for r in runs)
        dens = [r.summary.get("density") for r in runs]
        dens_txt = "1 (dense)" if dens[0] is None else f"{statistics.fmean(dens):.4f}"
        spe = statistics.fmean(r.summary["seconds_per_epoch"] for r in runs)
        cells = [*(_fmt_key(k) for k in key), str(len(runs)), f"{acc_m:.2f} ± {acc_s:.2f}",
                 f"{params:,.0f}", dens_txt, f"{spe:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _label(key: tuple, keys: list[str]) -> str:
    return ", ".join(f"{k}={_fmt_key(v)}" if k not in ("model", "dataset") else _fmt_key(v)
                     for k, v in zip(keys, key))


def plot_accuracy_vs_density(records: list[RunRecord], keys: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, runs in group_runs(records, keys).items():
        d = [r.summary.get("density") or 1.0 for r in runs]
        m, s = mean_std([100 * r.summary["test_acc"] for r in runs])
        ax.errorbar(statistics.fmean(d), m, yerr=s, fmt="o", capsize=3, label=_label(key, keys))
    ax.set_xlabel("density of hidden layers")
    ax.set_ylabel("final test accuracy (%)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_learning_curves(records: list[RunRecord], keys: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, runs in group_runs(records, keys).items():
        n = min(len(r.metrics) for r in runs)
        if n == 0:
            continue
        curve = [statistics.fmean(100 * r.metrics[e]["test_acc"] for r in runs) for e in range(n)]
        ax.plot(range(1, n + 1), curve, label=_label(key, keys))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%), mean over seeds")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def topology_series(run: RunRecord) -> list[tuple[int, float, float | None, float]]:
    """(step, mean intra fraction, ..., mean ever-active fraction) at each DST update of a run."""
    series = []
    for rec in run.metrics:
        for update in rec.get("dst", []):
            layers = list(update["layers"].values())
            intra = [l["intra_fraction"] for l in layers if l.get("intra_fraction") is not None]
            series.append((update["step"], statistics.fmean(intra) if intra else None,
                           statistics.fmean(l["ever_active"] for l in layers)))
    return series


def _dst_series(records: list[RunRecord]) -> tuple[list[RunRecord], dict[int, list]]:
    """The runs with at least one DST update, and each run's topology series (by id of the run)."""
    series = {id(r): topology_series(r) for r in records}
    return [r for r in records if series[id(r)]], series


def topology_table(records: list[RunRecord], keys: list[str]) -> str | None:
    """Markdown: intra-group and ever-active fractions after the first and the last DST update."""
    dst_runs, series_of = _dst_series(records)
    if not dst_runs:
        return None
    header = [*keys, "n", "updates", "intra fraction after 1st → last update", "ever active after 1st → last update"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def fmt(values: list) -> str:
        return "–" if any(v is None for v in values) else f"{statistics.fmean(values):.3f}"

    for key, runs in group_runs(dst_runs, keys).items():
        series = [series_of[id(r)] for r in runs]
        first, last = [s[0] for s in series], [s[-1] for s in series]
        cells = [*(_fmt_key(k) for k in key), str(len(runs)), str(min(len(s) for s in series)),
                 f"{fmt([f[1] for f in first])} → {fmt([l[1] for l in last])}",
                 f"{fmt([f[2] for f in first])} → {fmt([l[2] for l in last])}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_topology(records: list[RunRecord], keys: list[str], path: Path) -> bool:
    """Intra-group fraction and ever-active fraction over training for the DST runs."""
    dst_runs, series_of = _dst_series(records)
    if not dst_runs:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for key, runs in group_runs(dst_runs, keys).items():
        series = [series_of[id(r)] for r in runs]
        n = min(len(s) for s in series)
        steps = [series[0][i][0] for i in range(n)]
        intra = [s[i][1] for s in series for i in range(n)]
        if all(v is not None for v in intra):
            a1.plot(steps, [statistics.fmean(s[i][1] for s in series) for i in range(n)], label=_label(key, keys))
        a2.plot(steps, [statistics.fmean(s[i][2] for s in series) for i in range(n)], label=_label(key, keys))
    a1.set_title("fraction of active links inside an ensemble")
    a2.set_title("fraction of positions ever active")
    for a in (a1, a2):
        a.set_xlabel("optimizer step")
        a.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_masks(run: RunRecord, path: Path) -> bool:
    """Pictures of each sparse layer's mask from the run's checkpoint, in group-sorted order."""
    ckpt = run.path / "checkpoint.pt"
    if not ckpt.exists():
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=True)["model"]
    masks = [(k, v) for k, v in state.items() if k.endswith(".mask")]
    if not masks:
        return False
    fig, axes = plt.subplots(1, len(masks), figsize=(4 * len(masks), 4), squeeze=False)
    for ax, (name, mask) in zip(axes[0], masks):
        prefix = name[: -len("mask")]
        og, ig = state.get(prefix + "out_groups"), state.get(prefix + "in_groups")
        if og is not None and ig is not None:  # sort units by ensemble so blocks are visible
            mask = mask[torch.argsort(og, stable=True)][:, torch.argsort(ig, stable=True)]
        ax.imshow(mask.float().numpy(), cmap="Greys", interpolation="nearest", aspect="auto")
        ax.set_title(f"{prefix[:-1]} ({mask.float().mean():.3f})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def build_report(paths: list[Path], out: Path | None = None, by: list[str] | None = None, plots: bool = True) -> str:
    """Markdown report of the runs under ``paths``; with ``out``, also report.md and PNG plots."""
    records = find_runs(paths)
    keys = _row_keys(records, by)
    text = table(records, keys)
    if out is None:
        return text
    out.mkdir(parents=True, exist_ok=True)
    parts = [f"# Report\n\n{len(records)} runs. Final-model test accuracy, mean ± sample std over n seeds.\n",
             text, ""]
    topo = topology_table(records, keys)
    if topo:
        parts += ["## Topology under rewiring\n", "Mean over seeds, averaged over the sparse layers; "
                  "intra fraction = share of active links inside an ensemble (– for starts without "
                  "ensembles), ever active = share of all positions active at some point.\n", topo, ""]
    if plots:
        plot_accuracy_vs_density(records, keys, out / "accuracy_vs_density.png")
        plot_learning_curves(records, keys, out / "learning_curves.png")
        parts.append("## Plots\n\n![accuracy vs density](accuracy_vs_density.png)\n\n"
                     "![learning curves](learning_curves.png)\n")
        if plot_topology(records, keys, out / "topology.png"):
            parts.append("![topology over training](topology.png)\n")
        first_sparse = next((r for r in records if r.summary.get("density") is not None), None)
        if first_sparse and plot_masks(first_sparse, out / "masks.png"):
            parts.append(f"![masks of {first_sparse.path.name}](masks.png)\n")
    (out / "report.md").write_text("\n".join(parts))
    return text

