"""The G2GNet paper study (studies/g2gnet_paper): the claims as data, each kind's verdict on
hand-made run directories with hand-checked numbers, the frontier and long-schedule sections with
partial data, and RESULTS.md from tiny trained runs. Nothing here asserts prose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from g2gnet import G2GError
from g2gnet.cli import main
from g2gnet.config import Config
from g2gnet.report.tables import cells
from g2gnet.runs import find_runs
from rundirs import write_run
from studies.g2gnet_paper import frontier, long
from studies.g2gnet_paper.claims import KINDS, evaluate, load_claims
from studies.g2gnet_paper.results import TITLES, _sections, build_results

SMALL = ["--hidden", "32,32", "--groups", "4", "--batch-size", "64", "--lr", "0.005"]


def _rows(root: Path, dataset: str = "cifar10", suites: Path | None = None) -> dict:
    """The claims rows of a dataset by (claim, measured cells) as data: claim -> [rows]."""
    _, pools = _sections(root, dataset, suites or root.parent / "suites")
    out: dict[str, list] = {}
    for row in evaluate(load_claims(), dataset, pools):
        out.setdefault(row.claim, []).append(row)
    return out


# -- the claims file ---------------------------------------------------------------------------------

def test_the_claims_file_is_well_formed_data():
    claims = load_claims()
    assert claims and all(c.kind in KINDS for c in claims)
    assert {d for c in claims for d in c.datasets} <= set(TITLES)
    long_claim = next(c for c in claims if c.claim == "the gain holds at 100 epochs")
    assert (long_claim.kind, long_claim.of.name, long_claim.against.name, long_claim.reference) == \
        ("compare", "long-best", "long-dense", "table1")
    assert long_claim.verdicts["better"] == "holds" and long_claim.verdicts["within noise"] != "holds"
    # "at least dense" counts a within-noise difference as holding; the Hebbian rows do not
    at_least = next(c for c in claims if c.claim.startswith("at least dense"))
    assert at_least.verdicts["within noise"] == "holds (within noise: not shown worse)" and at_least.verdicts["worse"] == "does not hold"
    assert all(c.verdicts.get("within noise") is None for c in claims if c.claim == "the Hebbian rule helps")


_OK = '[select.a]\nfrom = ["table1"]\n'


@pytest.mark.parametrize("row, pattern", [
    ('kind = "nope"', "unknown kind in .*'nope'; valid: density, compare"),
    ('kind = "compare"\nof = "a"\nagainst = "zz"\nmeasured = "x"', "unknown selection .*'zz'; valid: a"),
    ('kind = "compare"\nof = "a"\nagainst = "a"\nmeasured = "{of.nosuch}"', r"unknown field \{of.nosuch\}"),
    ('kind = "compare"\nof = "a"\nagainst = "a"\nmeasured = "{gain}"', r"unknown field \{gain\}; valid for compare"),
    ('kind = "compare"\nof = "a"\nmeasured = "x"', "a compare claim needs against"),
    ('kind = "compare"\nof = "a"\nagainst = "a"\nmeasured = "x"\nverdicts = { beter = "y" }',
     "unknown outcome .*'beter'"),
    ('kind = "fixed"\nmeasured = "x"\nverdict = "y"\ncolour = 1', "unknown key.*colour"),
])
def test_bad_claim_rows_are_clear_errors(tmp_path, row, pattern):
    path = tmp_path / "claims.toml"
    path.write_text(_OK + f'\n[[claim]]\nclaim = "c"\ndatasets = ["cifar10"]\n{row}\n')
    with pytest.raises(G2GError, match=pattern):
        load_claims(path)


def test_a_selection_names_config_keys_in_the_dotted_vocabulary(tmp_path):
    path = tmp_path / "claims.toml"
    path.write_text('[select.a]\nfrom = ["table1"]\nwhere = { model = "dense" }\n')
    with pytest.raises(G2GError, match="unknown config key in select.a 'model'; valid: data.dataset"):
        load_claims(path)


# -- the kinds on hand-made runs ---------------------------------------------------------------------

def _table1(root: Path, dense: list[float], g2g: dict[str, list[float]], **extra) -> None:
    for s, a in enumerate(dense):
        write_run(root / "cifar10" / "table1" / f"dense-s{s}", a, s, name="dense", **extra)
    for model, accs in g2g.items():
        for s, a in enumerate(accs):
            write_run(root / "cifar10" / "table1" / f"{model}-s{s}", a, s, name=model, **extra)


def test_claim_verdicts_by_hand(tmp_path):
    root = tmp_path / "results"
    # g2g-index - dense: 5, 5.5, 4 (mean 4.83, sample std 0.764, half-width 4.303 * 0.764 / sqrt 3 = 1.90)
    _table1(root, [50.0, 51.0, 52.0], {"g2g-index": [55.0, 56.5, 56.0], "g2g-mixer": [53.0, 53.0, 53.0],
                                       "dense-matched": [50.5, 50.0, 52.5]})
    for s, (d, g) in enumerate([(60.0, 58.0), (61.0, 58.5), (62.0, 60.0)]):  # -2, -2.5, -2: worse
        write_run(root / "cifar10" / "patch" / f"dense-s{s}", d, s, name="dense", frontend="patch")
        write_run(root / "cifar10" / "patch" / f"g2g-mixer-s{s}", g, s, name="g2g-mixer", frontend="patch")
    rows = _rows(root)
    (at_least,) = rows["at least dense accuracy with far fewer parameters"]
    assert at_least.pair.cell.identity["model.name"] == "g2g-index"  # the most accurate grouping
    assert at_least.pair.diffs == pytest.approx([5.0, 5.5, 4.0]) and at_least.verdict == "holds"
    mean, low, high = at_least.pair.interval()
    assert (mean, low, high) == pytest.approx((4.8333, 2.9356, 6.7311), abs=1e-3)
    # g2g-index - dense-matched: 4.5, 6.5, 3.5: the paired verdict itself
    (matched,) = rows["... and vs a dense net of equal parameters"]
    assert matched.pair.diffs == pytest.approx([4.5, 6.5, 3.5]) and matched.verdict == "better"
    (patch,) = rows["... and with a conv front end (patch)"]
    assert patch.pair.diffs == pytest.approx([-2.0, -2.5, -2.0]) and patch.verdict == "does not hold"
    (gain,) = rows["accuracy up to +4.3%"]
    assert gain.pair.cell.identity["model.name"] == "g2g-index" and gain.verdict == "reached"  # 4.83 >= 4.3
    (density,) = rows["up to 75% sparsity"]
    assert density.measured.startswith("hidden layers at density 0.2500")  # the runs' own density
    (flops,) = rows["far fewer computations"]
    assert "0.25x" in flops.measured  # 500 / 2000 FLOPs per sample
    (missing,) = rows["the gain holds at 100 epochs"]  # no long runs: the row says so
    assert missing.pair is None and missing.verdict == "–"
    assert "the Hebbian rule helps" not in rows  # no DST runs: no row
    # below the paper's +4.3: "not reached" with the measured gain
    root2 = tmp_path / "r2"
    _table1(root2, [50.0, 51.0, 52.0], {"g2g-index": [53.0, 54.0, 55.0]})
    (small,) = _rows(root2)["accuracy up to +4.3%"]
    assert small.verdict == "not reached (+3.00 of +4.3)"


def test_a_claim_on_a_configuration_chosen_by_test_accuracy_is_marked(tmp_path):
    """The best of several groupings is chosen by its test accuracy (no validation split): its row
    says so (‡); a single candidate is no choice, and a fixed verdict (FLOPs) rests on no accuracy."""
    root = tmp_path / "results"
    _table1(root, [50.0, 51.0, 52.0], {"g2g-index": [55.0, 56.5, 56.0], "g2g-mixer": [53.0, 53.0, 53.0]})
    rows = _rows(root)
    (at_least,) = rows["at least dense accuracy with far fewer parameters"]
    (gain,) = rows["accuracy up to +4.3%"]
    (flops,) = rows["far fewer computations"]
    assert at_least.selected and gain.selected and not flops.selected
    assert at_least.markdown("CIFAR-10").endswith("| holds ‡ |")
    root1 = tmp_path / "one"
    _table1(root1, [50.0, 51.0, 52.0], {"g2g-index": [55.0, 56.5, 56.0]})
    (single,) = _rows(root1)["at least dense accuracy with far fewer parameters"]
    assert not single.selected and single.markdown("CIFAR-10").endswith("| holds |")


def test_within_noise_holds_for_at_least_dense(tmp_path):
    root = tmp_path / "results"
    _table1(root, [50.0, 51.0, 52.0], {"g2g-mixer": [51.0, 50.0, 52.5]})  # 1, -1, 0.5
    (row,) = _rows(root)["at least dense accuracy with far fewer parameters"]
    assert row.pair.verdict() == "within noise" and row.verdict == "holds (within noise: not shown worse)"


# -- the frontier, partial, with and without measured speeds -----------------------------------------

def _suite(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


FRONTIER = """out = "results/cifar10/frontier"
[fixed]
dataset = "cifar10"
[[grid]]
model = ["g2g-index"]
p-inter = [0.01]
seed = [0, 1, 2]
[[grid]]
model = ["g2g-index"]
p-inter = [0.05]
groups = [16]
seed = [0, 1, 2]
"""


def _bench_row(label: str, seconds: list[float], ratios: list[float], baseline: list[float] | None = None,
               **model) -> dict:
    config = Config().replace(data={"dataset": "cifar10", "augment": True}, model=model, train={"epochs": 30})
    s = sorted(ratios)
    row = {"label": label, "config": config.to_dict(), "seconds": seconds, "ratio": ratios,
           "ratio_median": s[len(s) // 2], "ratio_min": s[0], "ratio_max": s[-1]}
    return row if baseline is None else {**row, "baseline_seconds": baseline}


def _frontier_tree(tmp_path: Path) -> tuple[Path, Path]:
    root, suites = tmp_path / "results", tmp_path / "suites"
    _suite(suites / "cifar10-frontier.toml", FRONTIER)
    _table1(root, [50.0, 51.0, 52.0], {})
    for s, a in enumerate([56.0, 57.0, 58.0]):  # the p' sweep's p' = 0.05: +6 on every seed
        write_run(root / "cifar10" / "pinter" / f"g2g-index-p0.05-s{s}", a, s, name="g2g-index", p_inter=0.05)
        write_run(root / "cifar10" / "pinter" / f"g2g-random-p0.05-s{s}", a, s, name="g2g-random", p_inter=0.05)
    for s, a in enumerate([55.0, 57.0]):  # 2 of 3 finished: +5, +6
        write_run(root / "cifar10" / "frontier" / f"g2g-index-p0.01-s{s}", a, s, name="g2g-index", p_inter=0.01)
    return root, suites


def test_frontier_rows_from_partial_runs_and_measured_speeds(tmp_path):
    root, suites = _frontier_tree(tmp_path)
    bench = root / "bench" / "frontier" / "cifar10.json"
    bench.parent.mkdir(parents=True)
    rows = [_bench_row("dense", [10.0, 10.0, 10.0], [1.0, 1.0, 1.0], name="dense"),
            _bench_row("p.05", [5.0, 5.2, 4.8], [2.0, 1.9, 2.1], name="g2g-index", p_inter=0.05),
            _bench_row("p.01", [3.3, 3.6, 3.1], [3.0, 2.8, 3.2], name="g2g-index", p_inter=0.01)]
    bench.write_text(json.dumps({"kind": "epoch-speed", "dataset": "cifar10", "baseline": "dense",
                                 "env": {"threads": 1}, "rows": rows}))
    runs = {d: find_runs([root / "cifar10" / d]) for d in ("pinter", "table1")}
    f = frontier.frontier(root, "cifar10", suites, runs["pinter"], runs["table1"])
    by = {(r.cell.identity["model.name"], r.cell.identity["model.p_inter"]): r for r in f.rows}
    assert set(by) == {("dense", 0.15), ("g2g-index", 0.05), ("g2g-index", 0.01)}  # no g2g-random: not in the suite
    p01, p05, dense = by["g2g-index", 0.01], by["g2g-index", 0.05], by["dense", 0.15]
    assert (len(p01.cell.runs), p01.planned, p05.planned) == (2, 3, None)
    assert p01.vs_dense.diffs == pytest.approx([5.0, 6.0]) and p05.vs_dense.diffs == pytest.approx([6.0, 6.0, 6.0])
    # 5.5 +- 12.706 * 0.7071 / sqrt 2 = 6.35
    assert p01.vs_dense.interval() == pytest.approx((5.5, -0.853, 11.853), abs=1e-3)
    assert (dense.speedup, p05.speedup, p01.speedup) == ((1.0, 1.0, 1.0), (2.0, 1.9, 2.1), (3.0, 2.8, 3.2))
    assert p05.flops == pytest.approx(0.25)
    # (1, 51), (2, 57), (3, 56): dense is beaten on both; the other two trade speed for accuracy
    assert (dense.front, p05.front, p01.front) == (False, True, True)
    assert [i["model.groups"] for i in f.waiting] == [16]  # G = 16 planned, not started
    parts, cs = frontier.section(root, "cifar10", suites, runs["pinter"], runs["table1"])
    table = [l for l in "\n".join(parts).splitlines() if l.startswith("| g2g-index p' = 0.01 |")]
    assert table and table[0].split(" | ")[2] == "2 of 3" and len(cs) == 3
    pytest.importorskip("matplotlib")
    assert (root / "cifar10" / "frontier" / "accuracy_vs_speedup.png").stat().st_size > 1000


def test_frontier_without_speeds_says_so_and_draws_nothing(tmp_path):
    root, suites = _frontier_tree(tmp_path)
    runs = {d: find_runs([root / "cifar10" / d]) for d in ("pinter", "table1")}
    f = frontier.frontier(root, "cifar10", suites, runs["pinter"], runs["table1"])
    assert f.speeds is None and all(r.speedup is None and not r.front for r in f.rows)
    frontier.section(root, "cifar10", suites, runs["pinter"], runs["table1"])
    assert not (root / "cifar10" / "frontier" / "accuracy_vs_speedup.png").exists()


def test_bad_epoch_speed_file_is_a_clear_error(tmp_path):
    from g2gnet.report.speed import read_epoch_speeds
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"kind": "layer", "rows": []}))
    with pytest.raises(G2GError, match="not a g2g bench epoch-speed file"):
        read_epoch_speeds(path)
    path.write_text(json.dumps({"kind": "epoch-speed", "rows": [_bench_row("a", [], [1.0], name="dense")]}))
    with pytest.raises(G2GError, match="row 0: seconds must be a non-empty list"):
        read_epoch_speeds(path)


# -- the long schedule, partial ----------------------------------------------------------------------

LONG = """out = "results/cifar10/long"
[fixed]
dataset = "cifar10"
epochs = 4
[[grid]]
model = ["dense", "g2g-index"]
seed = [0, 1, 2]
"""


def _long_tree(tmp_path: Path, with_dense: bool = True) -> tuple[Path, Path]:
    root, suites = tmp_path / "results", tmp_path / "suites"
    _suite(suites / "cifar10-long.toml", LONG)
    # Table I at 2 epochs: gains 5, 6, 4
    _table1(root, [50.0, 51.0, 52.0], {"g2g-index": [55.0, 57.0, 56.0]}, epochs=2)
    long_dir = root / "cifar10" / "long"
    if with_dense:  # mean curve 46, 51, 53, 54: best 54 at epoch 4
        for s, c in enumerate([[45.0, 50.0, 52.0, 53.0], [46.0, 51.0, 53.0, 54.0], [47.0, 52.0, 54.0, 55.0]]):
            write_run(long_dir / f"dense-s{s}", c[-1], s, name="dense", epochs=4, curve=c)
    # 2 of 3 finished; mean curve 50.5, 54.5, ...: reaches 54 at epoch 2
    for s, c in enumerate([[50.0, 54.0, 55.0, 56.0], [51.0, 55.0, 56.0, 57.0]]):
        write_run(long_dir / f"g2g-index-s{s}", c[-1], s, name="g2g-index", epochs=4, curve=c)
    return root, suites


def test_long_schedule_against_table1_and_time_to_dense_best(tmp_path):
    root, suites = _long_tree(tmp_path)
    bench = root / "bench" / "frontier" / "cifar10.json"
    bench.parent.mkdir(parents=True)
    bench.write_text(json.dumps({"kind": "epoch-speed", "baseline": "dense", "rows": [
        _bench_row("dense", [10.0, 12.0, 11.0], [1.0, 1.0, 1.0], name="dense"),  # median 11 s
        _bench_row("idx", [4.0, 6.0, 5.0], [2.5, 2.0, 2.2], name="g2g-index")]}))  # median 5 s (timed at 30 epochs)
    short = cells(find_runs([root / "cifar10" / "table1"]))
    cs = cells(find_runs([root / "cifar10" / "long"]))
    own = {p.cell.identity["model.name"]: p for p in long.against_short(cs, short)}
    assert own["dense"].diffs == pytest.approx([3.0, 3.0, 3.0]) and own["dense"].verdict() == "better"
    assert own["g2g-index"].diffs == pytest.approx([1.0, 0.0])  # seed 2 has no long run yet
    (g,) = long.gain_changes(cs, short)
    assert g.short == pytest.approx([5.0, 6.0]) and g.long == pytest.approx([3.0, 3.0])
    assert g.change == pytest.approx([-2.0, -3.0])  # the gap closes by 2.5 points, n = 2
    from g2gnet.report.speed import read_epoch_speeds
    dense = next(c for c in cs if c.identity["model.name"] == "dense")
    best, epoch, reach = long.time_to_best(cs, dense, read_epoch_speeds(bench))
    assert (best, epoch) == (pytest.approx(54.0), 4)
    by = {r.cell.identity["model.name"]: r for r in reach}
    assert (by["dense"].epoch, by["dense"].seconds) == (4, pytest.approx(44.0))
    assert (by["g2g-index"].epoch, by["g2g-index"].seconds) == (2, pytest.approx(10.0))
    parts, _ = long.section(root, "cifar10", suites, short)
    row = next(l for l in "\n".join(parts).splitlines() if l.startswith("| g2g-index | 0 |"))  # model.dropout 0
    assert row.split(" | ")[2] == "2 of 3"
    # the claim: g2g-index - dense at 4 epochs, 3 and 3: better -> holds
    (claim,) = _rows(root, suites=suites)["the gain holds at 100 epochs"]
    assert claim.pair.diffs == pytest.approx([3.0, 3.0]) and claim.verdict == "holds"


def test_a_long_configuration_table1_lacks_pairs_with_its_frontier_run(tmp_path):
    """The frontier's best joins the long suite: its 30-epoch twin is the frontier's run (Table I
    has no g2g-index at p' = 0.01), and dense still pairs with Table I's dense only once."""
    root, suites = _frontier_tree(tmp_path)  # Table I dense 50, 51, 52; frontier p' 0.01: 55, 57
    _suite(suites / "cifar10-long.toml", LONG.replace('model = ["dense", "g2g-index"]', 'model = ["dense"]')
           + '[[grid]]\nmodel = ["g2g-index"]\np-inter = [0.01]\nseed = [0, 1]\n')
    long_dir = root / "cifar10" / "long"
    for s, a in enumerate([53.0, 54.0, 55.0]):
        write_run(long_dir / f"dense-s{s}", a, s, name="dense", epochs=4)
    for s, a in enumerate([58.0, 58.0]):
        write_run(long_dir / f"g2g-index-p0.01-s{s}", a, s, name="g2g-index", p_inter=0.01, epochs=4)
    doc, _ = _sections(root, "cifar10", suites)
    text = "\n".join(doc)
    table = text[text.index("Each configuration at 4 against 30 epochs"):].split("\n\n")[1]
    rows = {l.split(" | ")[0]: l.split(" | ") for l in table.splitlines()}
    assert rows["| dense"][1:5] == ["3", "51.00", "54.00", "+3.00 [+3.00, +3.00]"]  # 51 -> 54 on each seed
    assert rows["| g2g-index p' = 0.01"][1:4] == ["2", "56.00", "58.00"]  # 55, 57 -> 58, 58
    assert rows["| g2g-index p' = 0.01"][4].startswith("+2.00")


def test_dense_time_to_best_from_the_baseline_timed_beside_the_others(tmp_path):
    """The bench times dense beside every configuration, not as a row of its own: dense's clean
    seconds per epoch are the median of those epochs at its widths."""
    from g2gnet.report.speed import read_epoch_speeds
    root, _ = _long_tree(tmp_path)
    bench = tmp_path / "speeds.json"
    bench.write_text(json.dumps({"kind": "epoch-speed", "baseline": "dense", "rows": [
        _bench_row("idx", [4.0, 6.0, 5.0], [2.5, 2.0, 2.2], baseline=[10.0, 12.0, 13.0], name="g2g-index"),
        _bench_row("mix", [5.0], [2.0], baseline=[11.0], name="g2g-mixer"),  # pooled: median 11.5
        _bench_row("wide", [5.0], [2.0], baseline=[99.0], name="g2g-index", hidden=[2048] * 3)]}))  # other widths
    speeds = read_epoch_speeds(bench)
    cs = cells(find_runs([root / "cifar10" / "long"]))
    dense = next(c for c in cs if c.identity["model.name"] == "dense")
    _, _, reach = long.time_to_best(cs, dense, speeds)
    by = {r.cell.identity["model.name"]: r for r in reach}
    assert by["dense"].seconds_per_epoch == pytest.approx(11.5) and by["dense"].seconds == pytest.approx(46.0)
    assert speeds.baseline_seconds_per_epoch((64, 64)) is None


def test_long_schedule_renders_without_dense_and_without_speeds(tmp_path):
    root, suites = _long_tree(tmp_path, with_dense=False)
    short = cells(find_runs([root / "cifar10" / "table1"]))
    parts, cs = long.section(root, "cifar10", suites, short)
    assert len(cs) == 1 and long.gain_changes(cs, short) == []
    (claim,) = _rows(root, suites=suites)["the gain holds at 100 epochs"]
    assert claim.pair is None and claim.verdict == "–"


def test_the_document_holds_every_claims_row(tmp_path):
    root, suites = _long_tree(tmp_path)
    text = build_results(root, tmp_path / "RESULTS.md", suites)
    assert (tmp_path / "RESULTS.md").read_text() == text
    _, pools = _sections(root, "cifar10", suites)
    rows = evaluate(load_claims(), "cifar10", pools) + evaluate(load_claims(), "cifar100", {})
    for row in rows:
        assert row.markdown(TITLES[row.dataset]) in text


def test_results_flag_is_gone_from_the_cli(capsys):
    assert main(["report", "results", "--results", "RESULTS.md"]) == 2
    assert "studies.g2gnet_paper" in capsys.readouterr().err


# -- end to end on tiny trained runs -----------------------------------------------------------------

def _train(data, out, *extra):
    return main(["train", "--dataset", "fashion-mnist", "--data-dir", str(data), "--out", str(out), *SMALL, *extra])


def test_results_document_from_trained_runs(tiny_fmnist, tmp_path):
    root = tmp_path / "results"
    for seed in (0, 1):
        for model in ("dense", "dense-matched", "g2g-mixer", "g2g-index"):
            assert _train(tiny_fmnist, root / "fmnist" / "table1" / f"{model}-s{seed}", "--model", model,
                          "--epochs", "1", "--seed", str(seed)) == 0
        for rule in ("magnitude:hebbian", "magnitude:random"):
            assert _train(tiny_fmnist, root / "fmnist" / "dst" / f"g2g-mixer-{rule}-s{seed}", "--model",
                          "g2g-mixer", "--epochs", "1", "--seed", str(seed), "--dst", rule, "--dst-interval",
                          "4") == 0
    build_results(root, tmp_path / "RESULTS.md")
    rows = _rows(root, "fmnist")
    assert "up to 75% sparsity" in rows and len(rows["the Hebbian rule helps"]) == 2  # static and SET (no RigL)
    # every number comes from the runs: the pair behind "at least dense" is theirs, seed by seed
    (row,) = rows["at least dense accuracy with far fewer parameters"]
    acc = {(m, s): 100 * json.loads((root / "fmnist" / "table1" / f"{m}-s{s}" / "summary.json").read_text())["test_acc"]
           for m in ("dense", "g2g-index", "g2g-mixer") for s in (0, 1)}
    best = row.pair.cell.identity["model.name"]
    assert best == max(("g2g-index", "g2g-mixer"), key=lambda m: acc[m, 0] + acc[m, 1])
    assert row.pair.diffs == pytest.approx([acc[best, s] - acc["dense", s] for s in (0, 1)])


def test_a_cell_whose_seeds_span_code_versions_is_marked_where_claims_and_the_frontier_name_it(tmp_path):
    """SPEC §9: a table that mixes code versions says so; the frontier's n and a claim's mean did not."""
    from studies.g2gnet_paper.common import mean_n
    for s, v in enumerate(["aaa", "bbb"]):
        write_run(tmp_path / "dense" / f"s{s}", 50.0 + s, s, name="dense", version=v)
        write_run(tmp_path / "g2g" / f"s{s}", 55.0 + s, s, name="g2g-index", version="aaa")
    cs = {c.identity["model.name"]: c for c in cells(find_runs([tmp_path]))}
    assert mean_n(cs["dense"]) == "50.50 ± 0.71 (n = 2 †)" and mean_n(cs["g2g-index"]) == "55.50 ± 0.71 (n = 2)"
