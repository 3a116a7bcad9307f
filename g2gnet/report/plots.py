"""PNG plots of a report (matplotlib, the optional ``plot`` extra): accuracy against density and
against p', paired differences with their intervals, learning curves, topology under DST, masks.

``draw_all`` returns the Markdown that embeds what it drew; without matplotlib it draws nothing
and says so, and the report's tables are written all the same.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from ..errors import G2GError
from .tables import Cell, Paired, label, topology_series


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _plt().close(fig)


def accuracy_vs_density(cs: list[Cell], keys: list[str], path: Path) -> bool:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for c in cs:
        d = [r.summary.get("density") or 1.0 for r in c.runs]
        m, s = c.mean_std()
        ax.errorbar(statistics.fmean(d), m, yerr=s, fmt="o", capsize=3, label=label(c, keys))
    ax.set_xlabel("density of hidden layers")
    ax.set_ylabel("final test accuracy (%)")
    ax.legend(fontsize=6)
    _save(fig, path)
    return True


def accuracy_vs_pinter(cs: list[Cell], path: Path) -> bool:
    """One line per G2G grouping over p', dense (no dropout) as a mean ± std band."""
    g2g = [c for c in cs if str(c.identity["model.name"]).startswith("g2g-")]
    if len({c.identity["model.p_inter"] for c in g2g}) < 2:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for model in sorted({c.identity["model.name"] for c in g2g}):
        pts = sorted((c.identity["model.p_inter"], *c.mean_std()) for c in g2g if c.identity["model.name"] == model)
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3,
                    label=model)
    for c in cs:
        if c.identity["model.name"] == "dense" and not c.identity.get("model.dropout"):
            m, s = c.mean_std()
            ax.axhspan(m - s, m + s, color="grey", alpha=0.25, label=f"dense ({m:.2f} ± {s:.2f})")
            break
    ax.set_xlabel("p' (inter-ensemble connection probability)")
    ax.set_ylabel("final test accuracy (%)")
    ax.legend(fontsize=7)
    _save(fig, path)
    return True


def paired_differences(pairs: list[Paired], keys: list[str], path: Path) -> bool:
    rows = [(label(p.cell, keys), p.interval()) for p in pairs if p.interval() is not None]
    if not rows:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    for i, (name, (m, lo, hi)) in enumerate(rows):
        color = "tab:green" if lo > 0 else "tab:red" if hi < 0 else "tab:grey"
        ax.errorbar(m, i, xerr=[[m - lo], [hi - m]], fmt="o", color=color, capsize=3)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=6)
    ax.set_xlabel("difference to baseline, paired by seed (points, 95% CI)")
    _save(fig, path)
    return True


def learning_curves(cs: list[Cell], keys: list[str], path: Path) -> bool:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for c in cs:
        n = min(len(r.metrics) for r in c.runs)
        if n:
            curve = [statistics.fmean(100 * r.metrics[e]["test_acc"] for r in c.runs) for e in range(n)]
            ax.plot(range(1, n + 1), curve, label=label(c, keys))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%), mean over seeds")
    ax.legend(fontsize=6)
    _save(fig, path)
    return True


def topology(cs: list[Cell], keys: list[str], path: Path) -> bool:
    """Intra-group fraction and ever-active fraction over training for the DST runs."""
    rows = [(c, [s for s in (topology_series(r) for r in c.runs) if s]) for c in cs]
    rows = [(c, s) for c, s in rows if s]
    if not rows:
        return False
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for c, series in rows:
        n = min(len(s) for s in series)
        steps = [series[0][i][0] for i in range(n)]
        if all(s[i][1] is not None for s in series for i in range(n)):
            a1.plot(steps, [statistics.fmean(s[i][1] for s in series) for i in range(n)], label=label(c, keys))
        a2.plot(steps, [statistics.fmean(s[i][2] for s in series) for i in range(n)], label=label(c, keys))
    a1.set_title("fraction of active links inside an ensemble")
    a2.set_title("fraction of positions ever active")
    for a in (a1, a2):
        a.set_xlabel("optimizer step")
        a.legend(fontsize=6)
    _save(fig, path)
    return True


def masks(run_dir: Path, path: Path) -> bool:
    """Each sparse layer's mask from the run's checkpoint, in group-sorted order."""
    from ..layers import masks_from_state
    from ..runs import load_checkpoint

    ckpt = run_dir / "checkpoint.pt"
    if not ckpt.exists():
        return False
    state = load_checkpoint(ckpt).get("model")
    layers = masks_from_state(state) if isinstance(state, dict) else {}
    if not layers:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(layers), figsize=(4 * len(layers), 4), squeeze=False)
    for ax, (name, mask) in zip(axes[0], layers.items()):
        ax.imshow(mask.float().numpy(), cmap="Greys", interpolation="nearest", aspect="auto")
        ax.set_title(f"{name} ({mask.float().mean():.3f})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    _save(fig, path)
    return True


def draw_all(cs: list[Cell], keys: list[str], pairs: list[Paired], out: Path) -> list[str]:
    """Draw every plot that applies; returns the report's Markdown for them."""
    try:
        _plt()
    except ImportError:
        return ["Plots skipped: matplotlib is not installed (`pip install 'g2gnet[plot]'`).\n"]
    md = ["## Plots\n"]
    drawn = [
        ("accuracy_vs_density.png", "accuracy vs density", accuracy_vs_density(cs, keys, out / "accuracy_vs_density.png")),
        ("accuracy_vs_pinter.png", "accuracy vs p'", accuracy_vs_pinter(cs, out / "accuracy_vs_pinter.png")),
        ("paired.png", "paired differences", paired_differences(pairs, keys, out / "paired.png")),
        ("learning_curves.png", "learning curves", learning_curves(cs, keys, out / "learning_curves.png")),
        ("topology.png", "topology over training", topology(cs, keys, out / "topology.png")),
    ]
    md += [f"![{alt}]({name})\n" for name, alt, ok in drawn if ok]
    first_sparse = next((r for c in cs for r in c.runs if r.summary.get("density") is not None), None)
    if first_sparse is not None:
        try:
            if masks(first_sparse.path, out / "masks.png"):
                md.append(f"![masks of {first_sparse.path.name}](masks.png)\n")
        except G2GError as e:
            md.append(f"Mask picture skipped: {e}\n")
    return md
