"""RESULTS.md: every committed experiment of ``results/`` in one document, with a verdict per claim
of the paper's abstract and dataset (``python -m studies.g2gnet_paper results RESULTS.md``).

It knows the layout the suites write (``results/<dataset>/<suite>/<cell>``) and the suite files
that plan them (``suites/<dataset>-<suite>.toml``); every number comes from run directories
through ``g2gnet.runs.find_runs`` and the statistics of ``g2gnet.report``.
"""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

from g2gnet.errors import G2GError
from g2gnet.report.records import fact
from g2gnet.report.tables import MIXED, Cell, fmt
from g2gnet.runs import RunRecord

from . import frontier, long
from .claims import SELECTED, SELECTED_NOTE, Row, evaluate, load_claims
from .common import load, section

DATASETS = {"cifar10": "CIFAR-10", "fmnist": "Fashion-MNIST"}
TITLES = {**DATASETS, "cifar100": "CIFAR-100"}
SUITES = ("table1", "dropout-select", "pinter", "dst", "patch", "mixer", "tiles", "recheck")


def devices(records: list[RunRecord]) -> str:
    """Where the runs ran and their code versions: ``18 on CPU (367 s per run, 150-652); code ...``."""
    by_device: dict[str, list[RunRecord]] = {}
    for r in records:
        by_device.setdefault(_device(r), []).append(r)
    where = ", ".join(f"{len(rs)} on {d}{_seconds(rs)}" for d, rs in sorted(by_device.items()))
    versions = Counter(_version(r) for r in records)
    return where + "; code " + ", ".join(f"{v} ({n})" for v, n in versions.most_common())


def _device(r: RunRecord) -> str:
    """``CPU``, or the GPU its env.json names (``NVIDIA H200``; ``a GPU`` where it names none)."""
    if not str(r.config.train.device).startswith("cuda"):
        return "CPU"
    return str(r.env.get("cuda_device") or "a GPU")


def _seconds(records: list[RunRecord]) -> str:
    """Training time per run (summed over epochs and resumes; evaluation excluded): median (min-max)."""
    times = sorted(float(t) for r in records if isinstance(t := fact(r, "wall_time"), (int, float)))
    if not times:
        return ""
    return f" ({statistics.median(times):.0f} s per run, {times[0]:.0f}-{times[-1]:.0f})"


def _version(r: RunRecord) -> str:
    """The commit a run's code came from (GPU runs of 2026-11-30 carried a stale .git: their tree
    was 9fdfb7a, see results/device/README.md)."""
    sha = str(r.env.get("git_sha") or "?")[:7]
    return "9fdfb7a" if sha == "b2a9f93" and str(r.env.get("device", "")).startswith("cuda") else sha


def _dropout_choice(select: list[RunRecord]) -> tuple[float | None, str]:
    """The dropout P > 0 with the best mean validation accuracy of the selection runs (P = 0, the
    plain dense row, is shown beside them for reference)."""
    by_p: dict[float, list[float]] = {}
    for r in select:
        val = fact(r, "val_acc")
        if val is not None:
            by_p.setdefault(r.config.model.dropout, []).append(100 * val)
    rows = sorted(by_p.items())
    candidates = [kv for kv in rows if kv[0] > 0]
    if not candidates:
        return None, "no validation runs"
    best = max(candidates, key=lambda kv: statistics.fmean(kv[1]))[0]
    text = ", ".join(f"P = {p:g}: {statistics.fmean(v):.2f}% (n = {len(v)})" for p, v in rows)
    return best, text


def _sections(root: Path, dataset: str, suites: Path) -> tuple[list[str], dict[str, list[Cell]]]:
    """One dataset's sections, and its pools of cells (what the claims select from)."""
    rec = {s: load(root, dataset, s) for s in SUITES}
    pools: dict[str, list[Cell]] = {}
    doc: list[str] = []

    def add(key: str, title: str, records: list[RunRecord], by: list[str], baseline: str | None, note: str,
            report_dir: str) -> None:
        parts, pools[key] = section(title, records, by, baseline, note, report_dir, devices(records) if records else "")
        doc.extend(parts)

    chosen, choice_text = _dropout_choice(rec["dropout-select"])
    with_dropout = any(r.config.model.dropout for r in rec["table1"])
    base = "model.name=dense,model.dropout=0" if with_dropout else "model.name=dense"
    choice = (f"; dense with dropout P chosen on a validation split: **P = {chosen:g}** (mean validation accuracy "
              f"{choice_text})." if chosen is not None else ".")
    add("table1", "Table I", rec["table1"], ["model.name", "model.dropout"], base,
        "The paper's models on raw pixels" + choice, f"results/{dataset}/table1")
    pools["dropout-chosen"] = [c for c in pools["table1"] if c.identity["model.name"] == "dense"
                               and chosen is not None and fmt(c.identity["model.dropout"]) == fmt(chosen)]
    if rec["dropout-select"]:
        add("dropout-select", "Dropout chosen on validation", rec["dropout-select"], ["model.dropout"], None,
            "Dense trained on the training set less 5,000 held-out images; the held-out accuracy picks P (test "
            "accuracy shown, not used).", f"results/{dataset}/dropout-select")
    table1_g2g_dense = [r for r in rec["table1"] if r.config.model.name.startswith("g2g")
                        or (r.config.model.name == "dense" and not r.config.model.dropout)]
    add("pinter", "p' sweep", rec["pinter"] + table1_g2g_dense, ["model.name", "model.p_inter"], "model.name=dense",
        "Inter-ensemble probability p' for the three groupings (p' = 0.15 are Table I's runs).",
        f"results/{dataset}/pinter")
    static = [r for r in rec["table1"] if r.config.model.name in ("g2g-mixer", "er")]
    add("dst", "Dynamic sparse training", rec["dst"] + static, ["model.name", "dst.prune", "dst.grow"], "dst.prune=none",
        "Prune × grow rules every 1000 steps, ζ = 0.1; static rows are Table I's.", f"results/{dataset}/dst")
    for key, title, note, by, baseline in (
            ("patch", "Patch front end", "A trainable 8×8/8 conv (32 channels) before the hidden layers.",
             ["model.name"], "model.name=dense"),
            ("mixer", "MLP-Mixer with G2G blocks (beyond the paper)",
             "A 4-block MLP-Mixer (width 128) whose MLPs are dense, G2G, or G2G + DST. These runs' G2G "
             "blocks started from the dense mixer's weights on the mask without the fan-in scaling every "
             "other G2G layer starts with (about half the output scale; the code scales them since "
             "2026-12-08, not re-run: a CPU run takes hours), so the gap holds for that init.",
             ["model.name", "dst.prune", "dst.grow"], "model.name=mlp-mixer"),
            ("tiles", "Tiled inter-ensemble links", "g2g-mixer with T × T tiles (element-wise row: Table I).",
             ["model.name", "model.inter_tile"], None),
            ("recheck", "Table I's g2g-mixer on the packed layers",
             "The same configuration and seeds as Table I's g2g-mixer row, run by the current code (packed "
             "parameters, custom ops, a different draw order of masks and init).", ["model.name"], None)):
        if rec[key]:
            add(key, title, rec[key], by, baseline, note, f"results/{dataset}/{key}")
    parts, pools["frontier"] = frontier.section(root, dataset, suites, rec["pinter"], rec["table1"])
    doc += parts
    # Each long configuration's 30-epoch twin: Table I's runs, or the frontier's for the configurations
    # Table I lacks (the frontier's best joins the long suite).
    short = pools["table1"] + [c for c in pools["frontier"]
                               if all(c.identity != t.identity for t in pools["table1"])]
    parts, pools["long"] = long.section(root, dataset, suites, short)
    doc += parts
    return doc, pools


def build_results(root: Path, out: Path, suites: Path | None = None) -> str:
    """Write RESULTS.md for the run directories under ``root`` (``results/``), with the suite
    files under ``suites`` (default: ``suites/`` beside ``root``)."""
    if not root.is_dir():
        raise G2GError(f"{root} is not a directory of results")
    suites = suites if suites is not None else root.parent / "suites"
    claims = load_claims()
    doc = ["# Results\n",
           "Written by `python -m studies.g2gnet_paper results RESULTS.md` from the run directories under `results/` "
           "(each holds its config, environment with code version, per-epoch metrics and summary; "
           "checkpoints are not committed). Final-model test accuracy in %, mean ± sample std over n "
           "seeds (the value alone for n = 1); a row is one configuration, and the settings its rows share are "
           "listed above each table. Paired differences match runs by seed (same data order "
           "and augmentation); the 95% interval is Student's t with n − 1 degrees of freedom; verdict "
           "better / worse when the interval excludes 0, else within noise. These runs keep no validation "
           "split: where a section or claim names the best of several configurations (a sweep's, the "
           f"frontier's, a claim marked {SELECTED}), it was chosen by its test accuracy, and its lead over "
           "the others is measured on the test set that chose it (optimistic). A configuration's seeds may come from different code versions (listed per "
           "section; each run's env.json has its commit): they build the same models with the same "
           f"distribution of masks and initial weights, but a seed gives bit-identical models only "
           f"within one version; rows and pairs that mix versions are marked {MIXED}. Every recorded run with "
           "dropout (model.dropout > 0) drew its dropout masks from an unseeded generator (seeded per epoch "
           "since 2026-12-08): its seed repeats its masks, initial weights and data order, not its dropout.\n"]
    rows: list[Row] = []
    for dataset, title in DATASETS.items():
        if not (root / dataset).is_dir():
            continue
        doc.append(f"## {title}\n")
        doc.append("s/epoch and s per run are training wall time (evaluation excluded) where the run ran (GPU "
                   "runs: about 0.6 s per epoch; CPU runs of the sweeps: one thread, two runs sharing two cores), "
                   "not a speed measurement.\n")
        parts, pools = _sections(root, dataset, suites)
        doc += parts
        rows += evaluate(claims, dataset, pools)
    rows += evaluate(claims, "cifar100", {})
    doc += ["## CIFAR-100\n",
            "Not measurable on these machines: no genuine CIFAR-100 images are available offline. The code "
            "path (official-format reader and checks, 100-way head, augmentation, run directory) is proven on "
            "official-format files with random pixels ([`results/cifar100-synthetic`]"
            "(results/cifar100-synthetic/README.md)), and by the tests; a user with the official tarball runs "
            "`g2g sweep` with `dataset = \"cifar100\"`.\n"]
    doc += ["## Claims of the abstract\n", "| claim | dataset | measured | verdict |", "|---|---|---|---|"]
    doc += [r.markdown(TITLES[r.dataset]) for r in rows]
    if any(r.pair is not None and r.pair.mixed for r in rows):
        doc += ["", f"{MIXED} the pairs ran under different code versions (see the note at the top)."]
    if any(r.selected for r in rows):
        doc += ["", SELECTED_NOTE]
    doc.append("")
    text = "\n".join(doc)
    try:
        out.write_text(text)
    except OSError as e:
        raise G2GError(f"cannot write {out}: {e.strerror or e}") from None
    return text
