"""RESULTS.md: every committed experiment of ``results/`` in one document, with a verdict per claim
of the paper's abstract and dataset (``python -m studies.g2gnet_paper results RESULTS.md``).

It knows the layout the suites write (``results/<dataset>/<suite>/<cell>``); every number comes
from run directories through ``runs.find_runs`` and the statistics of ``tables``.
"""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

from g2gnet.errors import G2GError
from g2gnet.runs import RunRecord, find_runs
from g2gnet.report.tables import Cell, Paired, cells, columns, count, fmt, ordered, pair, paired, paired_table, table

DATASETS = {"cifar10": "CIFAR-10", "fmnist": "Fashion-MNIST"}
PAPER_GAIN = 4.3  # "improving accuracy by up to 4.3%" (abstract)


def _load(root: Path, dataset: str, suite: str) -> list[RunRecord]:
    path = root / dataset / suite
    return find_runs([path]) if path.is_dir() and any(path.rglob("summary.json")) else []


def _find(cs: list[Cell], **want) -> Cell | None:
    """The cell whose identity matches every ``field=value`` (``model_name`` for ``model.name``;
    values compared as tables print them)."""
    want = {k.replace("_", ".", 1): v for k, v in want.items()}
    hits = [c for c in cs if all(fmt(c.identity.get(k)) == fmt(v) for k, v in want.items())]
    return hits[0] if len(hits) == 1 else None


def _pair(a: Cell | None, b: Cell | None) -> Paired | None:
    """``a`` minus ``b`` paired by seed; None when either is missing or they share no seed."""
    if a is None or b is None:
        return None
    p = pair(a, b)
    return p if p.diffs else None


def _best_g2g(cs: list[Cell]) -> Cell | None:
    """The G2G configuration with the highest mean test accuracy."""
    return max((c for c in cs if str(c.identity["model.name"]).startswith("g2g-")), key=lambda c: c.mean_std()[0],
               default=None)


def _at_least_dense(p: Paired | None) -> str:
    """The verdict on "at least dense accuracy": the interval does not put G2G below dense."""
    return "holds" if p is not None and p.verdict() in ("better", "within noise") else "does not hold"


def _diff_text(p: Paired | None) -> str:
    if p is None:
        return "not measured"
    ci = p.interval()
    mean = statistics.fmean(p.diffs)
    if ci is None:
        return f"{mean:+.2f} points (n = {p.n})"
    return f"{mean:+.2f} points [{ci[1]:+.2f}, {ci[2]:+.2f}], n = {p.n}: {p.verdict()}"


def _mean(c: Cell | None) -> str:
    if c is None:
        return "–"
    m, s = c.mean_std()
    return f"{m:.2f} ± {s:.2f} (n = {len(c.runs)})"


def _devices(records: list[RunRecord]) -> str:
    by_device: dict[str, list[RunRecord]] = {}
    for r in records:
        by_device.setdefault(str(r.config.train.device).split(":")[0], []).append(r)
    where = ", ".join(f"{len(rs)} on {'the H200 GPU' if d == 'cuda' else 'CPU'}{_seconds(rs)}"
                      for d, rs in sorted(by_device.items()))
    versions = Counter(_version(r) for r in records)
    return where + "; code " + ", ".join(f"{v} ({n})" for v, n in versions.most_common())


def _seconds(records: list[RunRecord]) -> str:
    """Training time per run (summed over epochs and resumes; evaluation excluded): median (min-max)."""
    times = sorted(float(r.summary["wall_time"]) for r in records if isinstance(r.summary.get("wall_time"), (int, float)))
    if not times:
        return ""
    return f" ({statistics.median(times):.0f} s per run, {times[0]:.0f}-{times[-1]:.0f})"


def _version(r: RunRecord) -> str:
    """The commit a run's code came from (GPU runs of 2026-11-30 carried a stale .git: their tree
    was 9fdfb7a, see results/device/README.md)."""
    sha = str(r.env.get("git_sha") or "?")[:7]
    return "9fdfb7a" if sha == "b2a9f93" and str(r.env.get("device", "")).startswith("cuda") else sha


def _section(title: str, records: list[RunRecord], by: list[str], baseline: str | None, note: str,
             report_dir: str) -> tuple[list[str], list[Cell]]:
    if not records:
        return [f"### {title}\n", "Not run yet.\n"], []
    cs = cells(records)
    keys = columns(cs, by)
    cs = ordered(cs, keys)
    parts = [f"### {title}\n", note + f" {count(len(records), 'run')} ({_devices(records)}); report and plots: "
             f"[`{report_dir}`]({report_dir}/report.md).\n", table(cs, keys), ""]
    if baseline:
        pairs = paired(cs, baseline)
        if pairs:
            parts += [f"Paired by seed against {baseline} (points, 95% t-interval):\n",
                      paired_table(pairs, keys, baseline), ""]
    return parts, cs


def _dropout_choice(select: list[RunRecord]) -> tuple[float | None, str]:
    """The dropout P > 0 with the best mean validation accuracy of the selection runs (P = 0, the
    plain dense row, is shown beside them for reference)."""
    by_p: dict[float, list[float]] = {}
    for r in select:
        if "val_acc" in r.summary:
            by_p.setdefault(r.config.model.dropout, []).append(100 * r.summary["val_acc"])
    rows = sorted(by_p.items())
    candidates = [kv for kv in rows if kv[0] > 0]
    if not candidates:
        return None, "no validation runs"
    best = max(candidates, key=lambda kv: statistics.fmean(kv[1]))[0]
    text = ", ".join(f"P = {p:g}: {statistics.fmean(v):.2f}% (n = {len(v)})" for p, v in rows)
    return best, text


def _claims(dataset: str, t1: list[Cell], pinter: list[Cell], dst: list[Cell], chosen_p: float | None,
            patch: list[Cell]) -> list[list[str]]:
    name = DATASETS[dataset]
    dense = _find(t1, model_name="dense", model_dropout=0)
    g2g = [c for c in t1 + pinter if str(c.identity["model.name"]).startswith("g2g-") and c.identity["dst.prune"] is None]
    default = [c for c in g2g if c.identity["model.p_inter"] == 0.15 and c.identity["model.frontend"] == "none"]
    rows = []
    dens = [r.summary["density"] for c in default for r in c.runs if r.summary.get("density") is not None]
    if dens:
        d = statistics.fmean(dens)
        rows.append(["up to 75% sparsity", name, f"hidden layers at density {d:.4f} ({100 * (1 - d):.1f}% sparse)",
                     "holds (by construction: p_intra/G + p' (G-1)/G = 0.256)"])
    best = _best_g2g(default)
    if best is not None and dense is not None:
        p = _pair(best, dense)
        ratio = statistics.fmean(r.summary["active_params"] for r in best.runs) / \
            statistics.fmean(r.summary["active_params"] for r in dense.runs)
        rows.append(["at least dense accuracy with far fewer parameters", name,
                     f"best grouping {best.identity['model.name']} {_mean(best)} vs dense {_mean(dense)}; "
                     f"{_diff_text(p)}; {ratio:.2f}x the parameters", _at_least_dense(p)])
        versus = [("... and vs a dense net of equal parameters", _find(t1, model_name="dense-matched"), "dense-matched")]
        if chosen_p:
            versus.append(("... and vs dense with dropout (P chosen on validation)",
                           _find(t1, model_name="dense", model_dropout=chosen_p), f"dense, dropout {chosen_p:g}"))
        for claim, other, label in versus:
            if other is not None:
                q = _pair(best, other)
                rows.append([claim, name, f"{best.identity['model.name']} − {label}: {_diff_text(q)}",
                             q.verdict() if q else "–"])
    patch_dense, patch_best = _find(patch, model_name="dense"), _best_g2g(patch)
    p = _pair(patch_best, patch_dense)
    if p is not None:
        rows.append(["... and with a conv front end (patch)", name,
                     f"best grouping {patch_best.identity['model.name']} {_mean(patch_best)} vs dense "
                     f"{_mean(patch_dense)}: {_diff_text(p)}", _at_least_dense(p)])
    gains = [(p, c) for c in g2g if (p := _pair(c, dense)) is not None and p.n >= 2]
    if gains:
        p, c = max(gains, key=lambda pc: statistics.fmean(pc[0].diffs))
        top = statistics.fmean(p.diffs)
        rows.append([f"accuracy up to +{PAPER_GAIN}%", name,
                     f"largest mean gain over dense: {c.identity['model.name']} at p' = {c.identity['model.p_inter']:g}: "
                     f"{_diff_text(p)}",
                     "reached" if top >= PAPER_GAIN else f"not reached (+{top:.2f} of +{PAPER_GAIN})"])
    static = _find(t1, model_name="g2g-mixer", dst_prune=None, model_p_inter=0.15, model_frontend="none")
    heb = _find(dst, model_name="g2g-mixer", dst_prune="magnitude", dst_grow="hebbian")
    for label, other in (("static mask", static), ("random growth (SET)", _find(dst, model_name="g2g-mixer", dst_prune="magnitude", dst_grow="random")),
                         ("gradient growth (RigL)", _find(dst, model_name="g2g-mixer", dst_prune="magnitude", dst_grow="gradient"))):
        p = _pair(heb, other)
        if p is not None:
            rows.append(["the Hebbian rule helps", name, f"g2g-mixer magnitude:hebbian − {label}: {_diff_text(p)}",
                         {"better": "holds", "worse": "does not hold"}.get(p.verdict(), "within noise")])
    if best is not None and dense is not None:
        fr = statistics.fmean(r.summary["flops_per_sample"] for r in best.runs) / \
            statistics.fmean(r.summary["flops_per_sample"] for r in dense.runs)
        rows.append(["far fewer computations", name,
                     f"{fr:.2f}x the FLOPs per sample of dense (theoretical, active weights); wall-clock: "
                     "see README, Performance", "holds (theoretical); speed measured separately"])
    return rows


def build_results(root: Path, out: Path) -> str:
    """Write RESULTS.md for the run directories under ``root`` (``results/``)."""
    if not root.is_dir():
        raise G2GError(f"{root} is not a directory of results")
    doc = ["# Results\n",
           "Written by `python -m studies.g2gnet_paper results RESULTS.md` from the run directories under `results/` "
           "(each holds its config, environment with code version, per-epoch metrics and summary; "
           "checkpoints are not committed). Final-model test accuracy in %, mean ± sample std over n "
           "seeds; a row is one configuration. Paired differences match runs by seed (same data order "
           "and augmentation); the 95% interval is Student's t with n − 1 degrees of freedom; verdict "
           "better / worse when the interval excludes 0, else within noise. No selection on the test "
           "set anywhere. A configuration's seeds may come from different code versions (listed per "
           "section; each run's env.json has its commit): they build the same models with the same "
           "distribution of masks and initial weights, but a seed gives bit-identical models only "
           "within one version.\n"]
    claims: list[list[str]] = []
    for dataset, title in DATASETS.items():
        if not (root / dataset).is_dir():
            continue
        doc.append(f"## {title}\n")
        doc.append("s/epoch and s per run are training wall time (evaluation excluded) where the run ran (GPU "
                   "runs: about 0.6 s per epoch; CPU runs of the sweeps: one thread, two runs sharing two cores), "
                   "not a speed measurement.\n")
        rec = {s: _load(root, dataset, s) for s in ("table1", "dropout-select", "pinter", "dst", "patch", "mixer",
                                                   "tiles", "recheck")}
        chosen, choice_text = _dropout_choice(rec["dropout-select"])
        base = "model.name=dense,model.dropout=0" if any(r.config.model.dropout for r in rec["table1"]) else "model.name=dense"
        part, t1 = _section("Table I", rec["table1"], ["model.name", "model.dropout"], base,
                            "The paper's models on raw pixels" + (f"; dense with dropout P chosen on a validation "
                                                                  f"split: **P = {chosen:g}** (mean validation "
                                                                  f"accuracy {choice_text})." if chosen is not None
                                                                  else "."), f"results/{dataset}/table1")
        doc += part
        if rec["dropout-select"]:
            part, _ = _section("Dropout chosen on validation", rec["dropout-select"], ["model.dropout"], None,
                               "Dense trained on the training set less 5,000 held-out images; the held-out "
                               "accuracy picks P (test accuracy shown, not used).", f"results/{dataset}/dropout-select")
            doc += part
        part, pin = _section("p' sweep", rec["pinter"] + [r for r in rec["table1"] if r.config.model.name.startswith("g2g")
                                                           or (r.config.model.name == "dense" and not r.config.model.dropout)],
                             ["model.name", "model.p_inter"], "model.name=dense",
                             "Inter-ensemble probability p' for the three groupings (p' = 0.15 are Table I's runs).",
                             f"results/{dataset}/pinter")
        doc += part
        dst_records = rec["dst"] + [r for r in rec["table1"] if r.config.model.name in ("g2g-mixer", "er")]
        part, dst = _section("Dynamic sparse training", dst_records, ["model.name", "dst.prune", "dst.grow"], "dst.prune=none",
                             "Prune × grow rules every 1000 steps, ζ = 0.1; static rows are Table I's.",
                             f"results/{dataset}/dst")
        doc += part
        extra: dict[str, list[Cell]] = {}
        for key, title2, note, by, baseline in (
                ("patch", "Patch front end", "A trainable 8×8/8 conv (32 channels) before the hidden layers.",
                 ["model.name"], "model.name=dense"),
                ("mixer", "MLP-Mixer with G2G blocks (beyond the paper)",
                 "A 4-block MLP-Mixer (width 128) whose MLPs are dense, G2G, or G2G + DST.", ["model.name", "dst.prune", "dst.grow"],
                 "model.name=mlp-mixer"),
                ("tiles", "Tiled inter-ensemble links", "g2g-mixer with T × T tiles (element-wise row: Table I).",
                 ["model.name", "model.inter_tile"], None),
                ("recheck", "Table I's g2g-mixer on the packed layers",
                 "The same configuration and seeds as Table I's g2g-mixer row, run by the current code "
                 "(packed parameters, custom ops, a different draw order of masks and init).", ["model.name"], None)):
            if rec[key]:
                part, extra[key] = _section(title2, rec[key], by, baseline, note, f"results/{dataset}/{key}")
                doc += part
        claims += _claims(dataset, t1, pin, dst, chosen, extra.get("patch", []))
    doc += ["## CIFAR-100\n",
            "Not measurable on these machines: no genuine CIFAR-100 images are available offline. The code "
            "path (official-format reader and checks, 100-way head, augmentation, run directory) is proven on "
            "official-format files with random pixels ([`results/cifar100-synthetic`]"
            "(results/cifar100-synthetic/README.md)), and by the tests; a user with the official tarball runs "
            "`g2g sweep` with `dataset = \"cifar100\"`.\n"]
    doc += ["## Claims of the abstract\n",
            "| claim | dataset | measured | verdict |", "|---|---|---|---|"]
    doc += ["| " + " | ".join(row) + " |" for row in claims]
    doc += ["| all claims | CIFAR-100 | not measurable (no genuine images here) | – |", ""]
    text = "\n".join(doc)
    try:
        out.write_text(text)
    except OSError as e:
        raise G2GError(f"cannot write {out}: {e.strerror or e}") from None
    return text

