"""Report statistics on hand-made run records with hand-checked answers: grouping by configuration,
pairing by seed, the 95% t-interval and its verdict, row order, baseline parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
    assert capsys.readouterr().out.splitlines()[0].startswith("| " + " | ".join(example.split(",")) + " |")


@pytest.mark.parametrize("report, argv", [
    ('[report]\nbaseline = "model.name=dense"\nby = ["model.name", "model.p_inter"]\n',
     ["--baseline", "model.name=dense", "--by", "model.name,model.p_inter"]),
    ('report = ["--baseline", "model=dense"]\n', ["--baseline", "model=dense"]),  # the older form
    ("", []),
])
def test_suite_report_settings_as_a_table_or_the_older_list(tmp_path, report, argv):
    from g2gnet.sweep import cell_parser, load_suite
    path = tmp_path / "s.toml"
    top, _, table = report.partition("[report]")
    path.write_text(f'out = "{tmp_path / "out"}"\n{top}{"[report]" + table if table else ""}'
                    '[[grid]]\nmodel = ["dense"]\nseed = [0]\n')
    assert load_suite(path, [], [], None, cell_parser()).report == argv


def test_suite_report_table_unknown_key_is_an_error(tmp_path):
    from g2gnet.sweep import cell_parser, load_suite
    path = tmp_path / "s.toml"
    path.write_text(f'out = "{tmp_path}"\n[report]\nbaseline = "model.name=dense"\nbasline = "x"\n')
    with pytest.raises(G2GError, match="unknown report key.*basline; valid: baseline, by"):
        load_suite(path, [], [], None, cell_parser())
