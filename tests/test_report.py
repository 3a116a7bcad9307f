"""Report statistics on hand-made run records with hand-checked answers: grouping by configuration,
pairing by seed, the 95% t-interval and its verdict, row order, baseline parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from g2gnet import G2GError
from g2gnet.config import Config
from g2gnet.report.keys import parse_baseline, resolve
from g2gnet.report.tables import cells, columns, ordered, paired, paired_table, t975
from g2gnet.runs import RunRecord
from rundirs import write_run


def _run(acc: float, seed: int, **model) -> RunRecord:
    config = Config().replace(model=model, train={"seed": seed})
    summary = {"test_acc": acc / 100, "active_params": 1000, "density": None, "seconds_per_epoch": 1.0}
    return RunRecord(Path(f"/runs/{model}-{seed}"), config, summary)


def test_t_quantiles_from_the_table_and_beyond_it():
    assert t975(1) == 12.706 and t975(2) == 4.303 and t975(30) == 2.042
    assert t975(40) == pytest.approx(2.0211, abs=1e-3)  # standard tables
    assert t975(120) == pytest.approx(1.9799, abs=1e-3)
    with pytest.raises(ValueError):
        t975(0)


def test_paired_difference_interval_and_verdict_by_hand():
    runs = [_run(a, s, name="dense") for s, a in enumerate([50.0, 51.0, 52.0])]
    runs += [_run(a, s, name="g2g-index") for s, a in enumerate([53.0, 55.0, 54.0])]
    runs += [_run(a, s, name="er") for s, a in enumerate([51.0, 50.0, 53.0])]
    cs = cells(runs)
    (g2g, er) = sorted(paired(cs, "model=dense"), key=lambda p: p.cell.identity["model.name"], reverse=True)
    # differences 3, 4, 2: mean 3, sample std 1, half-width t(2) / sqrt(3) = 4.303 / 1.732 = 2.484
    assert g2g.diffs == pytest.approx([3.0, 4.0, 2.0])
    mean, low, high = g2g.interval()
    assert mean == pytest.approx(3.0) and low == pytest.approx(0.5156, abs=1e-4) and high == pytest.approx(5.4844, abs=1e-4)
    assert g2g.verdict() == "better"
    # differences 1, -1, 1: mean 1/3, interval contains 0
    assert er.diffs == pytest.approx([1.0, -1.0, 1.0]) and er.verdict() == "within noise"
    row = paired_table([g2g], ["model.name"], "model.name=dense").splitlines()[-1]
    assert row == "| g2g-index | 3 | +3.00 | [+0.52, +5.48] | better |"


def _data_run(acc: float, seed: int, dataset: str, labels: str = "fine", **model) -> RunRecord:
    r = _run(acc, seed, **model)
    return RunRecord(r.path.with_name(f"{dataset}-{labels}-{r.path.name}"),
                     r.config.replace(data={"dataset": dataset, "labels": labels}), r.summary)


def test_a_row_is_never_paired_with_another_datasets_baseline():
    """A row is paired with the baseline of its own data and training settings: CIFAR-10 rows
    against a Fashion-MNIST dense, or CIFAR-100's coarse labels against dense on the fine ones, had
    been paired as the nearest baseline and given a verdict."""
    runs = [_data_run(a, s, "fashion-mnist", name="dense") for s, a in enumerate([90.0, 90.5, 91.0])]
    runs += [_data_run(a, s, "fashion-mnist", name="g2g-mixer") for s, a in enumerate([91.0, 91.0, 92.0])]
    runs += [_data_run(a, s, "cifar10", name="g2g-mixer") for s, a in enumerate([60.0, 60.0, 61.0])]
    runs += [_data_run(a, s, "cifar100", "coarse", name="g2g-mixer") for s, a in enumerate([50.0, 51.0, 52.0])]
    cs = cells(runs)
    pairs = {(p.cell.identity["data.dataset"], p.cell.identity["data.labels"]): p for p in paired(cs, "model=dense")}
    assert pairs[("fashion-mnist", "fine")].diffs == pytest.approx([1.0, 0.5, 1.0])
    for other in (("cifar10", "fine"), ("cifar100", "coarse")):
        assert pairs[other].base is None and pairs[other].diffs == []
        assert pairs[other].verdict() == "no baseline with its data and training settings"
    keys = columns(cs, None)
    text = paired_table(list(pairs.values()), keys, "model.name=dense")
    assert "| cifar10 | fine | g2g-mixer | 0 | – | – | no baseline with its data and training settings |" in text


def test_rows_with_equally_near_baselines_stay_in_the_table_and_say_so():
    runs = [_run(a, s, name="dense", groups=g) for g in (4, 16) for s, a in enumerate([60.0, 61.0])]
    runs += [_run(a, s, name="g2g-index", groups=8) for s, a in enumerate([62.0, 63.0])]
    (p,) = paired(cells(runs), "model=dense")
    assert p.base is None and p.verdict() == "2 baselines equally near"


def test_the_paired_table_names_the_baseline_row_when_there_are_several():
    runs = [_run(a, s, name="dense", groups=g) for g in (4, 8) for s, a in enumerate([60.0, 61.0, 62.0])]
    runs += [_run(a, s, name="g2g-index", groups=g) for g in (4, 8) for s, a in enumerate([62.0, 63.0, 65.0])]
    pairs = paired(cells(runs), "model=dense")
    text = paired_table(pairs, ["model.name", "model.groups"], "model.name=dense").splitlines()
    assert text[0].startswith("| model.name | model.groups | paired with | n pairs |")
    assert text[-2:] == ["| g2g-index | 4 | model.groups=4 | 3 | +2.33 | [+0.90, +3.77] | better |",
                         "| g2g-index | 8 | model.groups=8 | 3 | +2.33 | [+0.90, +3.77] | better |"]
    one = paired_table(paired(cells(runs[3:]), "model=dense"), ["model.name", "model.groups"], "model.name=dense")
    assert "paired with" not in one  # one baseline row: nothing to tell apart


def test_pairs_only_seeds_both_have_and_needs_two():
    runs = [_run(60.0, 0, name="dense"), _run(61.0, 1, name="dense"),
            _run(62.0, 1, name="g2g-index"), _run(70.0, 5, name="g2g-index")]
    (p,) = paired(cells(runs), "model=dense")
    assert p.diffs == [1.0] and p.interval() is None and p.verdict() == "n < 2"
    # differences -2, -2.5, -2: half-width 4.303 * 0.289 / 1.732 = 0.72 < 2.17; with only the first
    # two seeds t(1) = 12.706 widens it past 0
    worse = [_run(a, s, name="dense") for s, a in enumerate([60.0, 61.0, 62.0])]
    worse += [_run(a, s, name="er") for s, a in enumerate([58.0, 58.5, 60.0])]
    assert paired(cells(worse), "model=dense")[0].verdict() == "worse"
    assert paired(cells([r for r in worse if r.config.train.seed < 2]), "model=dense")[0].verdict() == "within noise"


def test_cells_group_by_configuration_and_refuse_a_repeated_seed():
    runs = [_run(50.0, 0, name="er", p_inter=0.1), _run(51.0, 1, name="er", p_inter=0.1),
            _run(52.0, 0, name="er", p_inter=0.2)]
    cs = cells(runs)
    assert sorted(len(c.runs) for c in cs) == [1, 2]
    assert columns(cs, None) == ["model.p_inter"]  # only what varies is shown
    with pytest.raises(G2GError, match="same configuration and seed 0"):
        cells(runs + [_run(49.0, 0, name="er", p_inter=0.2)])


def test_rows_ordered_by_shown_keys_numbers_by_value():
    runs = [_run(50.0, 0, name=m, p_inter=p) for m, p in
            [("g2g-index", 0.2), ("dense", 0.15), ("g2g-index", 0.05), ("g2g-index", 0.1), ("er", 0.15)]]
    cs = ordered(cells(runs), ["model.name", "model.p_inter"])
    assert [(c.identity["model.name"], c.identity["model.p_inter"]) for c in cs] == [
        ("dense", 0.15), ("er", 0.15), ("g2g-index", 0.05), ("g2g-index", 0.1), ("g2g-index", 0.2)]


@pytest.mark.parametrize("baseline, pattern", [
    ("dense", "must be KEY=VALUE"), ("nosuch=1", "unknown --baseline key 'nosuch'"),
    ("model=mlp-mixer", "no runs with model.name=mlp-mixer"),
    ("model.name=dense,model.dropout", "must be KEY=VALUE"),
])
def test_bad_baselines_are_clear_errors(baseline, pattern):
    cs = cells([_run(50.0, 0, name="dense"), _run(52.0, 0, name="er")])
    with pytest.raises(G2GError, match=pattern):
        paired(cs, baseline)


def test_report_results_flag_points_to_the_study(capsys):
    from g2gnet.cli import main
    assert main(["report", "results", "--results", "RESULTS.md"]) == 2
    err = capsys.readouterr().err
    assert "python -m studies.g2gnet_paper results RESULTS.md" in err and len(err.strip().splitlines()) == 1


def test_one_key_vocabulary_with_the_short_keys_as_aliases():
    runs = [_run(50.0, 0, name="dense"), _run(52.0, 0, name="g2g-index", p_inter=0.05),
            _run(53.0, 0, name="g2g-index", p_inter=0.1)]
    cs = cells(runs)
    valid = list(cs[0].identity)
    assert "model.p_inter" in valid and "train.epochs" in valid and "train.seed" not in valid
    # the dotted key and its 0.1 alias name the same column; dst names both criteria
    assert columns(cs, ["model.p_inter"]) == columns(cs, ["p_inter"]) == ["model.p_inter", "model.name"]
    assert resolve("dst", valid, "--by key") == ["dst.prune", "dst.grow"]
    assert resolve("dst_interval", valid, "--by key") == ["dst.interval"]
    with pytest.raises(G2GError, match="unknown --by key 'model.nope'; valid: data.dataset"):
        columns(cs, ["model.nope"])
    assert parse_baseline("model=dense,dropout=0", valid) == {"model.name": "dense", "model.dropout": "0"}
    assert parse_baseline("dst=static", valid) == {"dst.prune": "none", "dst.grow": "none"}
    assert parse_baseline("dst=magnitude:hebbian", valid) == {"dst.prune": "magnitude", "dst.grow": "hebbian"}
    assert parse_baseline("model.hidden=64,64,model.name=er", valid) == {"model.hidden": "64,64", "model.name": "er"}
    # the same pairs whichever spelling names the baseline
    a, b = paired(cs, "model=dense"), paired(cs, "model.name=dense")
    assert [p.diffs for p in a] == [p.diffs for p in b] == [[2.0], [3.0]]


def test_cli_by_help_example_is_accepted(tmp_path, capsys):
    from g2gnet.cli import build_parser, main
    report = next(a for a in build_parser()._subparsers._group_actions[0].choices["report"]._actions
                  if a.dest == "by")
    example = report.help.split("e.g. ")[1].split(" ")[0]
    for name, acc in [("dense", 50.0), ("g2g-index", 55.0)]:
        write_run(tmp_path / f"{name}-s0", acc, 0, name=name)
    assert main(["report", str(tmp_path), "--by", example, "--baseline", "model.name=dense", "--no-plots"]) == 0
    header = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("| "))
    assert header.startswith("| " + " | ".join(example.split(",")) + " |")


@pytest.mark.parametrize("report, options", [
    ('[report]\nbaseline = "model.name=dense"\nby = ["model.name", "model.p_inter"]\n',
     ("model.name=dense", ("model.name", "model.p_inter"))),
    ('report = ["--baseline", "model=dense", "--by", "model,p_inter"]\n',  # the older form
     ("model=dense", ("model", "p_inter"))),
    ("", (None, None)),
])
def test_suite_report_settings_as_a_table_or_the_older_list(tmp_path, report, options):
    from g2gnet.sweep import ReportOptions, cell_parser, load_suite
    path = tmp_path / "s.toml"
    top, _, table = report.partition("[report]")
    path.write_text(f'out = "{tmp_path / "out"}"\n{top}{"[report]" + table if table else ""}'
                    '[[grid]]\nmodel = ["dense"]\nseed = [0]\n')
    assert load_suite(path, [], [], None, cell_parser()).report == ReportOptions(*options)


def test_suite_report_table_unknown_key_is_an_error(tmp_path):
    from g2gnet.sweep import cell_parser, load_suite
    path = tmp_path / "s.toml"
    path.write_text(f'out = "{tmp_path}"\n[report]\nbaseline = "model.name=dense"\nbasline = "x"\n')
    with pytest.raises(G2GError, match="report must be a table \\(baseline, by\\)"):
        load_suite(path, [], [], None, cell_parser())


# -- item: reports fit for a paper -----------------------------------------------------------------

def _records(root: Path):
    from g2gnet.runs import find_runs
    return find_runs([root])


def test_shared_settings_and_one_seed_without_spread(tmp_path):
    from g2gnet.report.tables import shared, table
    write_run(tmp_path / "dense-s0", 50.0, 0, name="dense", epochs=7)
    write_run(tmp_path / "g2g-s0", 55.0, 0, name="g2g-index", epochs=7)
    write_run(tmp_path / "g2g-s1", 57.0, 1, name="g2g-index", epochs=7)
    cs = cells(_records(tmp_path))
    keys = columns(cs, None)
    assert keys == ["model.name"]
    line = shared(cs, keys)
    for item in ("`data.dataset=cifar10`", "`train.epochs=7`", "`model.hidden=1024,1024,1024`", "`dst.prune=none`"):
        assert item in line
    assert "model.name" not in line and "dst.interval" not in line  # shown, and DST is off everywhere
    rows = {r.split(" | ")[0][2:]: r.split(" | ") for r in table(ordered(cs, keys), keys).splitlines()[2:]}
    assert rows["dense"][1:3] == ["1", "50.00"]            # n = 1: the value, no "± 0.00"
    assert rows["g2g-index"][1:3] == ["2", "56.00 ± 1.41"]  # sample std of 55, 57 = sqrt(2)


def test_dst_settings_are_shared_when_rows_rewire(tmp_path):
    from g2gnet.report.tables import shared
    for s, rule in enumerate(["random", "hebbian"]):
        write_run(tmp_path / f"a{s}", 50.0, 0, name="g2g-mixer", dst={"prune": "magnitude", "grow": rule})
    cs = cells(_records(tmp_path))
    keys = columns(cs, None)
    assert keys == ["dst.grow"]
    line = shared(cs, keys)
    assert "`dst.prune=magnitude`" in line and "`dst.interval=1000`" in line and "dst.grow" not in line


def test_pairs_across_code_versions_are_marked(tmp_path):
    from g2gnet.report.tables import MIXED, table
    for s, (d, a, b) in enumerate([(50.0, 53.0, 52.0), (51.0, 55.0, 52.5)]):
        write_run(tmp_path / f"dense-s{s}", d, s, name="dense", version="A")
        # seed 1 of g2g-index was resumed under another code version
        write_run(tmp_path / f"idx-s{s}", a, s, name="g2g-index", version="A", resumed=["B"] if s else [])
        write_run(tmp_path / f"mix-s{s}", b, s, name="g2g-mixer", version="A", resumed=["A"])  # same version
    cs = cells(_records(tmp_path))
    pairs = {p.cell.identity["model.name"]: p for p in paired(cs, "model.name=dense")}
    assert pairs["g2g-index"].mixed and not pairs["g2g-mixer"].mixed
    assert pairs["g2g-index"].diffs == pytest.approx([3.0, 4.0])
    text = paired_table(list(pairs.values()), ["model.name"], "model.name=dense")
    marked = [l.split(" | ")[0][2:] for l in text.splitlines() if f" {MIXED} |" in l]
    assert marked == ["g2g-index"] and text.count(MIXED) == 2  # the row's mark and the footnote's
    rows = [l for l in table(cs, ["model.name"]).splitlines() if f" {MIXED} |" in l]
    assert [r.split(" | ")[0][2:] for r in rows] == ["g2g-index"]
    # a pair only of seeds that share a version is not marked
    one = [p for p in paired(cells([r for r in _records(tmp_path) if r.config.train.seed == 0]),
                             "model.name=dense")]
    assert not any(p.mixed for p in one)


def test_learning_curve_band_is_mean_and_sample_std(tmp_path):
    from g2gnet.report.plots import curve
    a = write_run(tmp_path / "a", 52.0, 0, name="dense", curve=[40.0, 50.0, 52.0])
    b = write_run(tmp_path / "b", 54.0, 1, name="dense", curve=[42.0, 54.0, 54.0, 60.0])
    runs = _records(tmp_path)
    pts = curve(runs)
    assert len(pts) == 3  # up to the shortest run
    assert pts[0] == pytest.approx((41.0, 2 ** 0.5)) and pts[1] == pytest.approx((52.0, 8 ** 0.5))
    assert curve([r for r in runs if r.path == a])[2] == pytest.approx((52.0, 0.0))
    assert b.exists()


def test_equal_sizes_are_set_side_by_side_in_order():
    from g2gnet.report.plots import spread
    xs = spread([1000.0, 1001.0, 5000.0, 1000.5])
    assert xs[2] == 5000.0                       # alone: where it is
    assert xs[0] < xs[3] < xs[1]                 # a cluster keeps its order, spread apart
    assert min(abs(xs[i] / xs[j] - 1) for i, j in ((0, 3), (3, 1))) > 0.02


def _figures(monkeypatch):
    """Capture the figures a plot function saves."""
    from g2gnet.report import plots
    saved = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: saved.append(fig))
    return saved


def test_plots_name_their_baseline_and_use_readable_fonts(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.text import Text

    from g2gnet.report import plots
    for s, (d, g) in enumerate([(50.0, 53.0), (51.0, 55.0), (52.0, 54.0)]):
        write_run(tmp_path / f"d{s}", d, s, name="dense", curve=[d - 5, d])
        write_run(tmp_path / f"g{s}", g, s, name="g2g-index", curve=[g - 5, g])
        write_run(tmp_path / f"e{s}", g - 1, s, name="er", curve=[g - 6, g - 1])
    cs = ordered(cells(_records(tmp_path)), ["model.name"])
    pairs = paired(cs, "model.name=dense")
    saved = _figures(monkeypatch)
    assert plots.paired_differences(pairs, ["model.name"], "model.name=dense", tmp_path / "p.png")
    assert plots.learning_curves(cs, ["model.name"], tmp_path / "l.png")
    assert plots.accuracy_vs_params(cs, ["model.name"], tmp_path / "a.png")
    assert "model.name=dense" in saved[0].axes[0].get_title()
    for fig in saved:
        fig.canvas.draw()
        texts = [t for t in fig.findobj(Text) if t.get_text()]
        assert texts and min(t.get_fontsize() for t in texts) >= 10
    # the learning curves shade one band per multi-seed row
    assert len(saved[1].axes[0].collections) == 3


def test_masks_show_a_g2g_run_rebuilt_from_its_config(tmp_path):
    pytest.importorskip("matplotlib")
    from g2gnet.report.plots import mask_run, masks
    small = {"hidden": [32, 32], "groups": 4}
    write_run(tmp_path / "er-s0", 50.0, 0, name="er", dataset="fashion-mnist", **small)
    write_run(tmp_path / "dense-s0", 50.0, 0, name="dense", dataset="fashion-mnist", **small)
    write_run(tmp_path / "idx-s0", 51.0, 0, name="g2g-index", p_inter=0.0, dataset="fashion-mnist", **small)
    cs = cells(_records(tmp_path))
    run = mask_run(cs)
    assert run.config.model.name == "g2g-index"
    how = masks(run, tmp_path / "masks.png")
    assert how and "config.json" in how and (tmp_path / "masks.png").stat().st_size > 1000
    # p' = 0 with 4 ensembles: sorted by ensemble, each mask is exactly its 4 diagonal blocks
    from g2gnet.state_compat import masks_from_state
    from g2gnet.report.plots import _mask_state
    for mask in masks_from_state(_mask_state(run)[0]).values():
        o, i = mask.shape
        blocks = torch.zeros(o, i, dtype=torch.bool)
        for g in range(4):
            blocks[g * o // 4:(g + 1) * o // 4, g * i // 4:(g + 1) * i // 4] = True
        assert torch.equal(mask, blocks)


def test_a_large_group_of_equal_sizes_stays_narrow():
    from g2gnet.report.plots import spread
    xs = spread([1000.0] * 20)
    assert len(set(xs)) == 20 and max(xs) / min(xs) <= 1.0 + 0.18  # at most e^0.16 wide


def test_accuracy_vs_pinter_draws_one_line_per_configuration(tmp_path, monkeypatch):
    """G = 8 and G = 16 over p' are two lines (they had been one, a change of G drawn as a p'
    effect); the dense band is the dense of the same dataset, and several datasets draw nothing."""
    from g2gnet.report import plots
    drawn = {}

    def capture(fig, ax, path, *args):
        drawn["series"] = {c.get_label(): [tuple(map(float, xy)) for xy in zip(*c.lines[0].get_data())]
                           for c in ax.containers}
        drawn["bands"] = [p.get_label() for p in ax.patches]
        plots._plt().close(fig)
        return True

    monkeypatch.setattr(plots, "_finish", capture)
    runs = [_data_run(a, s, "fashion-mnist", name="g2g-index", groups=g, p_inter=p)
            for g, p, a in ((8, 0.05, 60.0), (8, 0.15, 62.0), (16, 0.05, 66.0), (16, 0.15, 67.0)) for s in range(2)]
    runs += [_data_run(55.0 + s, s, "fashion-mnist", name="dense") for s in range(2)]
    other = [_data_run(40.0 + s, s, "cifar10", name="dense") for s in range(2)]
    assert plots.accuracy_vs_pinter(cells(other + runs), tmp_path / "a.png")
    assert drawn["series"] == {"groups=8": [(0.05, 60.0), (0.15, 62.0)], "groups=16": [(0.05, 66.0), (0.15, 67.0)]}
    assert drawn["bands"] == ["dense, mean ± std (55.50 ± 0.71)"]
    mixed = runs + [_data_run(a, s, "cifar10", name="g2g-index", groups=8, p_inter=p)
                    for p, a in ((0.05, 50.0), (0.15, 51.0)) for s in range(2)]
    assert not plots.accuracy_vs_pinter(cells(mixed), tmp_path / "b.png")


def test_a_baseline_every_row_matches_is_said(tmp_path):
    """Every row a baseline row (``--baseline p_inter=0.15`` on Table I): the report says there is
    nothing to pair, rather than leaving the paired table out without a word."""
    from g2gnet.report import build_report
    for s in range(2):
        write_run(tmp_path / f"dense-s{s}", 50.0 + s, s, name="dense")
        write_run(tmp_path / f"g2g-s{s}", 55.0 + s, s, name="g2g-index")
    text = build_report([tmp_path], baseline="model.p_inter=0.15")
    assert text.endswith("Every row matches model.p_inter=0.15: no row to pair with it.")
