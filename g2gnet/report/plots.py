"""PNG plots of a report (matplotlib, the optional ``plot`` extra): accuracy against active
parameters and against p', paired differences with their intervals, learning curves with seed
bands, topology under DST, masks of a G2G run.

Every plot says what its bars and bands are (± 1 sample std over seeds, or the 95% t-interval of a
paired difference) and names its baseline; fonts are at least 10 pt and series have distinct
colour and marker pairs. ``draw_all`` returns the Markdown that embeds what it drew; without
matplotlib it draws nothing and says so, and the report's tables are written all the same.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from ..errors import G2GError
from ..runs import CHECKPOINT, RunRecord
from .records import fact
from .tables import Cell, Paired, label, topology_series

FONT = 11  # points: body text; legends and ticks one point smaller, never below 10
_RC = {"font.size": FONT, "axes.titlesize": FONT, "axes.labelsize": FONT, "legend.fontsize": FONT - 1,
       "xtick.labelsize": FONT - 1, "ytick.labelsize": FONT - 1}
_MARKERS = "osD^vP*Xh<>p"
STD = "mean ± 1 sample std over seeds"
FINAL_ACC = "final test accuracy (%)"  # the y axis of every plot of final-model accuracy


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(_RC)
    return plt


_LINES = ("-", "--", ":", "-.")


def style(i: int) -> dict:
    """The i-th series: one of tab10's ten distinct colours, and a new marker and line style for
    each further ten, so no two series look alike."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    k = i // cmap.N
    return {"color": cmap(i % cmap.N), "marker": _MARKERS[k % len(_MARKERS)], "linestyle": _LINES[k % len(_LINES)]}


def _legend(ax, n: int) -> None:
    """Beside the axes when there are many series (so it hides no point), inside otherwise."""
    if n > 6:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, frameon=False)
    else:
        ax.legend()


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=120, bbox_inches="tight")
    _plt().close(fig)


def _finish(fig, ax, path: Path, xlabel: str, ylabel: str, title: str, series: int) -> bool:
    """Label the axes, place the legend of ``series`` entries, save and close; True: a plot was drawn."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _legend(ax, series)
    _save(fig, path)
    return True


def spread(xs: list[float], rel: float = 0.03, width: float = 0.16) -> list[float]:
    """Log-scale x positions with points that (nearly) coincide pushed apart side by side, in their
    order, so equal-sized models do not hide each other; ``rel``: the gap as a fraction of x, narrowed
    so that a group spans at most ``width`` (a large group must not look like different sizes)."""
    out = list(xs)
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    group: list[int] = []
    for i in order + [None]:
        if i is not None and group and abs(math.log(xs[i]) - math.log(xs[group[0]])) < rel:
            group.append(i)
            continue
        gap = min(rel, width / max(len(group) - 1, 1))
        for k, j in enumerate(group):
            out[j] = xs[j] * math.exp(gap * (k - (len(group) - 1) / 2))
        group = [i] if i is not None else []
    return out


def accuracy_vs_params(cs: list[Cell], keys: list[str], path: Path) -> bool:
    """Accuracy against active parameters (log scale), one point per configuration; models of the
    same size are set side by side."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    xs = spread([c.mean("active_params") for c in cs])
    for i, (c, x) in enumerate(zip(cs, xs)):
        m, s = c.mean_std()
        st = style(i)
        ax.errorbar(x, m, yerr=s if len(c.runs) > 1 else None, capsize=3, linestyle="none", color=st["color"],
                    marker=st["marker"], label=label(c, keys))
    ax.set_xscale("log")
    return _finish(fig, ax, path, "active parameters (log scale; equal sizes set side by side)", FINAL_ACC, STD,
                   len(cs))


def accuracy_vs_pinter(cs: list[Cell], path: Path) -> bool:
    """One line per G2G configuration over p' (every other key equal along a line; the legend names
    the keys that tell the lines apart), and dense without dropout under the same data and training
    settings as a mean ± std band. Nothing when the G2G rows span several data or training settings
    (one axis would mix them), no band unless exactly one dense row shares them."""
    g2g = [c for c in cs if str(c.identity["model.name"]).startswith("g2g-")]
    if len({c.identity["model.p_inter"] for c in g2g}) < 2:
        return False
    keys = list(g2g[0].identity)
    setting = [k for k in keys if k.startswith(("data.", "train."))]

    def values(c: Cell, ks: list[str]) -> str:
        return json.dumps([c.identity[k] for k in ks])

    if len({values(c, setting) for c in g2g}) > 1:
        return False
    rest = [k for k in keys if k != "model.p_inter"]
    lines: dict[str, list[Cell]] = {}
    for c in g2g:
        lines.setdefault(values(c, rest), []).append(c)
    apart = [k for k in rest if len({json.dumps(c.identity[k]) for c in g2g}) > 1] or ["model.name"]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, members in enumerate(sorted(lines.values(), key=lambda m: label(m[0], apart))):
        pts = sorted((c.identity["model.p_inter"], *c.mean_std()) for c in members)
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], capsize=3,
                    label=label(members[0], apart), **style(i))
    dense = [c for c in cs if c.identity["model.name"] == "dense" and not c.identity.get("model.dropout")
             and values(c, setting) == values(g2g[0], setting)]
    if len(dense) == 1:
        m, s = dense[0].mean_std()
        ax.axhspan(m - s, m + s, color="grey", alpha=0.25, label=f"dense, mean ± std ({m:.2f} ± {s:.2f})")
    return _finish(fig, ax, path, "p' (inter-ensemble connection probability)", FINAL_ACC,
                   f"error bars and band: {STD}", len(lines) + len(dense[:1]))


_VERDICT_COLOURS = {"better": "tab:green", "within noise": "tab:grey", "worse": "tab:red"}


def paired_differences(pairs: list[Paired], keys: list[str], baseline: str, path: Path) -> bool:
    """Each row minus the baseline (named in the title), paired by seed, with its 95% interval."""
    rows = [(label(p.cell, keys), p.interval(), p.verdict()) for p in pairs if p.interval() is not None]
    if not rows:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(rows) + 1.6))
    seen = set()
    for i, (name, (m, lo, hi), verdict) in enumerate(rows):
        ax.errorbar(m, i, xerr=[[m - lo], [hi - m]], fmt="o", color=_VERDICT_COLOURS[verdict], capsize=3,
                    label=None if verdict in seen else verdict)
        seen.add(verdict)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.invert_yaxis()  # the table's order, top to bottom
    ax.set_title(f"row − {baseline}, paired by seed")
    ax.set_xlabel("difference (points); bars: 95% t-interval of the mean")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, frameon=False)
    _save(fig, path)
    return True


def accuracy_vs_speedup(points: list[tuple[str, tuple[float, float, float], tuple[float, float, int], bool]],
                        path: Path) -> bool:
    """Accuracy against measured epoch speed-up over dense (dense at 1×): one point per
    configuration, ``(label, (median, min, max) speed-up, (mean, std, n) accuracy, on the front)``;
    horizontal bars span the repeats' min–max, vertical bars ± 1 std; the Pareto front is joined."""
    if len(points) < 2:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, (name, (x, lo, hi), (m, s, n), front) in enumerate(points):
        st = style(i)
        ax.errorbar(x, m, xerr=[[x - lo], [hi - x]], yerr=s if n > 1 else None, capsize=3, linestyle="none",
                    color=st["color"], marker=st["marker"], markersize=9 if front else 6,
                    markeredgecolor="black" if front else st["color"], label=name + (" (front)" if front else ""))
    edge = sorted((x, m) for _, (x, _, _), (m, _, _), front in points if front)
    if len(edge) > 1:
        ax.plot([e[0] for e in edge], [e[1] for e in edge], color="black", lw=1, linestyle="--", zorder=0,
                label="Pareto front")
    ax.axvline(1.0, color="grey", lw=0.8)
    return _finish(fig, ax, path, "epoch speed-up over dense (measured; bars: min–max of repeats)", FINAL_ACC,
                   f"vertical bars: {STD}", len(points) + 1)


def curve(runs: list[RunRecord], key: str = "test_acc") -> list[tuple[float, float]]:
    """Per epoch (up to the shortest run): mean and sample std (0 for one run) over the runs, in %."""
    n = min((len(r.metrics) for r in runs), default=0)
    out = []
    for e in range(n):
        values = [100 * r.metrics[e][key] for r in runs]
        out.append((statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0))
    return out


def learning_curves(cs: list[Cell], keys: list[str], path: Path, target: tuple[float, str] | None = None) -> bool:
    """Test accuracy per epoch, mean over seeds with a ± 1 std band; ``target``: a level to mark
    (accuracy, its name), e.g. the baseline's best."""
    rows = [(c, curve(c.runs)) for c in cs]
    rows = [(c, pts) for c, pts in rows if pts]
    if not rows:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, (c, pts) in enumerate(rows):
        st = style(i)
        epochs = range(1, len(pts) + 1)
        mean = [p[0] for p in pts]
        ax.plot(epochs, mean, color=st["color"], linestyle=st["linestyle"],
                label=f"{label(c, keys)} (n = {len(c.runs)})")
        if len(c.runs) > 1:
            ax.fill_between(epochs, [p[0] - p[1] for p in pts], [p[0] + p[1] for p in pts], color=st["color"],
                            alpha=0.2, linewidth=0)
    if target is not None:
        ax.axhline(target[0], color="black", lw=0.8, linestyle="--", label=target[1])
    return _finish(fig, ax, path, "epoch", "test accuracy (%)", f"line and band: {STD}",
                   len(rows) + (target is not None))


def topology(cs: list[Cell], keys: list[str], path: Path) -> bool:
    """Intra-group fraction and ever-active fraction over training for the DST runs."""
    rows = [(c, [s for s in (topology_series(r) for r in c.runs) if s]) for c in cs]
    rows = [(c, s) for c, s in rows if s]
    if not rows:
        return False
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for i, (c, series) in enumerate(rows):
        st = {k: v for k, v in style(i).items() if k != "marker"}
        n = min(len(s) for s in series)
        steps = [series[0][k][0] for k in range(n)]
        if all(s[k][1] is not None for s in series for k in range(n)):
            a1.plot(steps, [statistics.fmean(s[k][1] for s in series) for k in range(n)], label=label(c, keys), **st)
        a2.plot(steps, [statistics.fmean(s[k][2] for s in series) for k in range(n)], label=label(c, keys), **st)
    a1.set_title("active links inside an ensemble (fraction)")
    a2.set_title("positions ever active (fraction)")
    for a in (a1, a2):
        a.set_xlabel("optimizer step")
        a.set_ylabel("mean over seeds and sparse layers")
    a2.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, frameon=False)
    _save(fig, path)
    return True


def _mask_state(run: RunRecord) -> tuple[dict, str] | None:
    """A run's model state for its mask picture and how it was obtained: its checkpoint, or, for a
    static mask without one (checkpoints are not committed), the model its config.json builds."""
    from ..runs import load_checkpoint

    ckpt = run.path / CHECKPOINT
    if ckpt.exists():
        state = load_checkpoint(ckpt).get("model")
        return (state, "from its checkpoint") if isinstance(state, dict) else None
    if run.config.dst.enabled:
        return None  # the mask moved during training: only the checkpoint holds the final one
    from ..load import untrained_model

    model = untrained_model(run.config)
    return model.state_dict(), "as this code builds it from config.json (static mask; checkpoint not kept)"


def mask_run(cs: list[Cell]) -> RunRecord | None:
    """The run whose masks to draw: a G2G one where there is one (an ER mask is noise to the eye),
    a run with a checkpoint before one rebuilt from its config."""
    drawable = [r for c in cs for r in c.runs if fact(r, "density") is not None
                and ((r.path / CHECKPOINT).exists() or not r.config.dst.enabled)]
    return min(drawable, key=lambda r: ("g2g" not in r.config.model.name, not (r.path / CHECKPOINT).exists()),
               default=None)


def masks(run: RunRecord, path: Path) -> str | None:
    """Each sparse layer's mask, rows and columns sorted by ensemble; returns how it was obtained."""
    from ..state_compat import masks_from_state

    got = _mask_state(run)
    layers = masks_from_state(got[0]) if got else {}
    if not layers:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(layers), figsize=(4 * len(layers), 4.3), squeeze=False)
    for ax, (name, mask) in zip(axes[0], layers.items()):
        ax.imshow(mask.float().numpy(), cmap="Greys", interpolation="nearest", aspect="auto")
        ax.set_title(f"{name}: density {mask.float().mean():.3f}")
        ax.set_xlabel("inputs (by ensemble)")
        ax.set_ylabel("outputs (by ensemble)")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{run.config.model.name}, seed {run.config.train.seed} ({run.path.name})")
    _save(fig, path)
    return got[1]


def ensemble_fill(fills: dict, path: Path, title: str = "") -> None:
    """Heat maps of ``{layer: [G, G] fill}`` (``SparseLinear.ensemble_fill``): the fraction of links
    active in every (output ensemble, input ensemble) block, 0 to 1 on one colour scale."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(fills), figsize=(3.6 * len(fills) + 1.0, 3.6), squeeze=False)
    image = None
    for ax, (name, fill) in zip(axes[0], fills.items()):
        image = ax.imshow(fill.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(f"{name}: own blocks {fill.diagonal().mean():.2f}")
        ax.set_xlabel("input ensemble")
        ax.set_ylabel("output ensemble")
    if image is not None:
        fig.colorbar(image, ax=list(axes[0]), label="fraction of links active")
    if title:
        fig.suptitle(title)
    _save(fig, path)


def draw_all(cs: list[Cell], keys: list[str], pairs: list[Paired], baseline: str | None, out: Path) -> list[str]:
    """Draw every plot that applies; returns the report's Markdown for them."""
    try:
        _plt()
    except ImportError:
        return ["Plots skipped: matplotlib is not installed (`pip install 'g2gnet[plot]'`).\n"]
    md = ["## Plots\n"]
    drawn = [
        ("accuracy_vs_params.png", "accuracy vs active parameters",
         accuracy_vs_params(cs, keys, out / "accuracy_vs_params.png")),
        ("accuracy_vs_pinter.png", "accuracy vs p'", accuracy_vs_pinter(cs, out / "accuracy_vs_pinter.png")),
        ("paired.png", f"paired differences against {baseline}",
         bool(pairs) and paired_differences(pairs, keys, str(baseline), out / "paired.png")),
        ("learning_curves.png", "learning curves with seed bands",
         learning_curves(cs, keys, out / "learning_curves.png")),
        ("topology.png", "topology over training", topology(cs, keys, out / "topology.png")),
    ]
    md += [f"![{alt}]({name})\n" for name, alt, ok in drawn if ok]
    run, how = mask_run(cs), None
    if run is not None:
        try:
            how = masks(run, out / "masks.png")
        except G2GError as e:
            md.append(f"Mask picture skipped: {e}\n")
        if how:
            md.append(f"Masks of {run.path.name} ({run.config.model.name}), {how}:\n\n![masks](masks.png)\n")
    # A plot this report did not draw (or an older report's name for one) would be stale beside it.
    stale = [name for name, _, ok in drawn if not ok] + ([] if how else ["masks.png"]) + ["accuracy_vs_density.png"]
    for name in stale:
        (out / name).unlink(missing_ok=True)
    return md
