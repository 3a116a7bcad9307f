"""g2g sweep: cells and their names, skipping and resuming, one process per run directory, and a
sweep killed with SIGKILL and restarted that loses no cell and runs none twice."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from g2gnet.errors import G2GError
from g2gnet.runs import RunDir
from g2gnet.sweep import cell_parser, load_suite, run_sweep

WORKER = (sys.executable, str(Path(__file__).with_name("tiny_worker.py")))
SMALL = {"hidden": [32, 32], "groups": 4, "batch-size": 64, "threads": 1}


def _suite(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return path


def test_cells_names_and_options(tmp_path):
    path = _suite(tmp_path, """
out = "o"
names = { p-inter = "p" }
[fixed]
dataset = "cifar10"
hidden = [64, 64]
[[grid]]
model = ["dense", "g2g-index"]
seed = [0, 1]
[[grid]]
model = ["g2g-mixer"]
p-inter = [0.05, 0.1]
dst = ["magnitude:hebbian"]
""")
    suite = load_suite(path, [], ["epochs=2"], None, cell_parser())
    names = [c.name for c in suite.cells]
    assert names == ["dense-s0", "dense-s1", "g2g-index-s0", "g2g-index-s1",
                     "g2g-mixer-p0.05-magnitude-hebbian-s0", "g2g-mixer-p0.1-magnitude-hebbian-s0"]
    cfg = suite.cells[-1].config
    assert cfg.model.p_inter == 0.1 and cfg.dst.prune == "magnitude" and cfg.train.epochs == 2
    assert cfg.model.hidden == (64, 64) and cfg.data.dataset == "cifar10" and suite.out == Path("o")


@pytest.mark.parametrize("text, pattern", [
    ('out = "o"\n[[grid]]\nmodel = ["dense", "resnet"]', "unknown model 'resnet'"),  # S28: up front
    ('out = "o"\n[[grid]]\np-inter = [0.1, 1.5]', "p_inter must be a probability"),
    ('out = "o"\n[[grid]]\nwidth = [3]', "unrecognized arguments: --width"),
    ('out = "o"\n[[grid]]\nmodel = "dense"', "must be a non-empty list"),
    ('out = "o"\nflavour = 1', "unknown key(s) flavour"),
    ('[[grid]]\nmodel = ["dense"]', "needs an output directory"),
    ('out = "o"\n[[grid', "not valid TOML"),
])
def test_bad_suites_are_one_line_errors(tmp_path, text, pattern):
    with pytest.raises(G2GError, match=pattern.replace("(", r"\(").replace(")", r"\)")):
        load_suite(_suite(tmp_path, text), [], [], None, cell_parser())


def _grid(out: Path, epochs: int) -> list[str]:
    return [*(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in SMALL.items()),
            f"epochs={epochs}"]


def test_sweep_runs_skips_and_reports(tiny_fmnist, tmp_path):
    suite = load_suite(None, ["model=dense,g2g-index", "seed=0,1"], _grid(tmp_path, 1), str(tmp_path / "out"),
                       cell_parser())
    lines = []
    assert run_sweep(suite, workers=2, extra=["--data-dir", str(tiny_fmnist)], log=lines.append,
                     g2g=(*WORKER, str(tiny_fmnist))) == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name != "logs") == \
        ["dense-s0", "dense-s1", "g2g-index-s0", "g2g-index-s1"]
    assert any("[4/4]" in l and "ETA" in l for l in lines), lines
    stamps = {c.name: (tmp_path / "out" / c.name / "summary.json").stat().st_mtime_ns for c in suite.cells}
    lines.clear()
    assert run_sweep(suite, workers=2, log=lines.append, g2g=(*WORKER, str(tiny_fmnist))) == []
    assert "4 done" in lines[0] and len(lines) == 1
    assert stamps == {c.name: (tmp_path / "out" / c.name / "summary.json").stat().st_mtime_ns for c in suite.cells}


def test_cell_held_by_another_process_is_waited_for_then_taken_over(tiny_fmnist, tmp_path):
    # S24: the sweep neither runs a held cell nor ends before it is free; a holder that stops
    # without finishing leaves the cell to this sweep.
    suite = load_suite(None, ["model=dense"], _grid(tmp_path, 1), str(tmp_path / "out"), cell_parser())
    run = RunDir(tmp_path / "out" / "dense-s0")
    run.open(suite.cells[0].config, resume=False)  # a live writer holds the lock
    assert run.status() == "new" and RunDir(run.path).status() == "busy"
    release = threading.Timer(2.0, run.close)
    release.start()
    lines = []
    t0 = time.monotonic()
    try:
        assert run_sweep(suite, extra=["--data-dir", str(tiny_fmnist)], log=lines.append,
                         g2g=(*WORKER, str(tiny_fmnist))) == []
    finally:
        release.cancel()
        run.close()
    assert time.monotonic() - t0 > 2.0 and "1 running elsewhere" in lines[0], lines
    assert any("waiting for 1 cell(s)" in l for l in lines), lines
    assert (run.path / "summary.json").exists() and any("[1/1]" in l and "done" in l for l in lines), lines


def test_sigkill_and_restart_loses_no_cell_and_runs_none_twice(tiny_fmnist, tmp_path):
    out = tmp_path / "out"
    argv = [*WORKER, str(tiny_fmnist), "sweep", "--out", str(out), "--workers", "2", "--no-report",
            "--data-dir", str(tiny_fmnist), *(a for g in ["model=dense,g2g-mixer", "seed=0,1"] for a in ("--grid", g)),
            *(a for s in _grid(out, 12) for a in ("--set", s))]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(out.glob("*/checkpoint.pt")) and time.monotonic() < deadline:  # an epoch has finished
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)  # the workers die with the sweep (parent-death signal)
    cut = {d.name: RunDir(d).status() for d in out.iterdir() if d.name != "logs"}
    started = {d.name for d in out.iterdir() if (d / "env.json").exists()}  # got past data and model
    assert "busy" not in cut.values() and "partial" in cut.values(), cut
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("dense-s0", "dense-s1", "g2g-mixer-s0", "g2g-mixer-s1"):
        records = [json.loads(l) for l in (out / name / "metrics.jsonl").read_text().splitlines()]
        assert [m["epoch"] for m in records] == list(range(1, 13)), name
        resumes = json.loads((out / name / "env.json").read_text())["resumes"]
        assert len(resumes) == (name in started and cut[name] == "partial"), name


def test_workers_run_the_sweeps_own_package(tmp_path):
    # A worker started from another checkout's directory still imports this g2gnet.
    from g2gnet import sweep

    (tmp_path / "g2gnet").mkdir()
    (tmp_path / "g2gnet" / "__init__.py").write_text("raise SystemExit('the wrong g2gnet')\n")
    r = subprocess.run([*sweep.G2G, "list"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "models:" in r.stdout, r.stdout + r.stderr


# -- the second audit's sweep cases (../shared/docs/reliability-audit-2.md) -------------------------------
def _cli_one_line(capsys, argv: list[str], pattern: str) -> str:
    from g2gnet.cli import main

    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1 and err.startswith("g2g: error: "), err
    assert pattern in err, err
    return err


@pytest.mark.parametrize("text, pattern", [
    ('out = "o"\nfixed = 5\n[[grid]]\nseed = [0]', "fixed must be a table ([fixed]), got int 5"),  # S5
    ('out = "o"\n[grid]\nmodel = ["dense"]', "grid must be an array of tables ([[grid]]), got a table"),  # S6
    ('out = 5\n[[grid]]\nseed = [0]', "out must be a non-empty string, got int 5"),  # S7
    ('out = "o"\nnames = 5\n[[grid]]\nseed = [0]', "names must be a table of strings"),  # S8
    ('out = "o"\ninclude = [5]\n[[grid]]\nseed = [0]', "include must be a list of strings"),  # S9
    ('out = "o"\ngrid = [5]', "grid must be an array of tables"),  # S10
    ('out = "o"\n[fixed]\nhidden = { a = 1 }\n[[grid]]\nseed = [0]', "fixed.hidden must be a value or a list"),
    ('out = "o"\n[[grid]]\nmodel = [{ a = 1 }]', "grid axis model must be a list of values"),
    ('out = "o"\nreport = ["--bogus"]\n[[grid]]\nseed = [0]', "report: unrecognized arguments: --bogus"),  # S13
    ('out = "o"\n[[grid]]\nmodel = ["dense", "nosuchmodel"]', "unknown model 'nosuchmodel'"),  # S28
    ('out = "o"\n[[grid]]\ndataset = ["nosuch"]', "unknown dataset 'nosuch'"),  # S28
    ('out = "o"\n[[grid]]\ndst = ["magnitude:telepathy"]', "unknown grow criterion 'telepathy'"),
])
def test_S5_to_S13_S28_malformed_suites_are_one_line_before_any_cell(tmp_path, capsys, text, pattern):
    path = _suite(tmp_path, text)
    with pytest.raises(G2GError, match=re.escape(pattern)):
        load_suite(path, [], [], None, cell_parser())
    _cli_one_line(capsys, ["sweep", str(path), "--dry-run"], pattern)
    assert not (tmp_path / "o").exists()


def test_S37_a_suite_that_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "bin.toml"
    path.write_bytes(b'\xff\xfeout = "x"\n')
    _cli_one_line(capsys, ["sweep", str(path)], "is not UTF-8 text")


def test_S28_unknown_names_on_the_command_line_up_front(tmp_path, capsys):
    _cli_one_line(capsys, ["sweep", "--grid", "model=dense,nosuchmodel", "--set", "hidden=64", "--dry-run",
                           "--out", str(tmp_path / "bad2")], "unknown model 'nosuchmodel'")


@pytest.mark.parametrize("limit", ["nan", "-5", "inf"])
def test_S26_time_limit_must_be_a_finite_number_of_seconds(tmp_path, capsys, limit):
    _cli_one_line(capsys, ["sweep", "--grid", "seed=0", "--set", "hidden=64", "--out", str(tmp_path / "tl"),
                           f"--time-limit={limit}"], "--time-limit must be a number of seconds >= 0")
    assert not (tmp_path / "tl").exists()


def test_time_limit_0_starts_no_cell_and_reports(tiny_fmnist, tmp_path):
    """How scripts/report_all.sh rebuilds a suite's report: the finished cell is reported, the new
    one is not started."""
    out = str(tmp_path / "zero")
    one = load_suite(None, ["seed=0"], _grid(tmp_path, 1), out, cell_parser())
    assert run_sweep(one, extra=["--data-dir", str(tiny_fmnist)], log=lambda s: None,
                     g2g=(*WORKER, str(tiny_fmnist))) == []
    from g2gnet.cli import main

    argv = ["sweep", "--grid", "seed=0,1", *(a for kv in _grid(tmp_path, 1) for a in ("--set", kv)), "--out", out,
            "--time-limit", "0"]
    assert main(argv) == 0
    assert not (tmp_path / "zero" / "run-s1").exists()
    assert "run-s0" in (tmp_path / "zero" / "report.md").read_text()


def test_S21_a_cell_holding_another_configuration_is_never_reported_as_it(tiny_fmnist, tmp_path):
    out = str(tmp_path / "chg")
    first = load_suite(None, ["model=dense"], _grid(tmp_path, 1), out, cell_parser())
    assert run_sweep(first, extra=["--data-dir", str(tiny_fmnist)], log=lambda s: None,
                     g2g=(*WORKER, str(tiny_fmnist))) == []
    summary = tmp_path / "chg" / "dense-s0" / "summary.json"
    stamp = summary.stat().st_mtime_ns
    changed = load_suite(None, ["model=dense"], [*_grid(tmp_path, 2)[:-1], "hidden=48,48", "epochs=2"], out,
                         cell_parser())
    with pytest.raises(G2GError) as e:
        run_sweep(changed, log=lambda s: None, g2g=(*WORKER, str(tiny_fmnist)))
    assert "dense-s0" in str(e.value) and "epochs 1, not 2" in str(e.value) and "hidden 32,32, not 48,48" in str(e.value)
    assert summary.stat().st_mtime_ns == stamp
    (tmp_path / "chg" / "dense-s0" / "summary.json").unlink()  # partial: the same answer, before anything runs
    with pytest.raises(G2GError, match="dense-s0 .*epochs 1, not 2"):
        run_sweep(changed, log=lambda s: None, g2g=(*WORKER, str(tiny_fmnist)))
    # device and threads are not part of a run's identity
    same = load_suite(None, ["model=dense"], [*_grid(tmp_path, 1), "threads=2"], out, cell_parser())
    lines = []
    assert run_sweep(same, extra=["--data-dir", str(tiny_fmnist)], log=lines.append,
                     g2g=(*WORKER, str(tiny_fmnist))) == []
    assert "1 to resume" in lines[0]


def test_S30_an_unwritable_log_fails_that_cell_in_one_line(tiny_fmnist, tmp_path, monkeypatch):
    import builtins

    real_open = builtins.open

    def denied(file, mode="r", *a, **k):
        if "logs" in Path(str(file)).parts and "a" in mode:
            raise PermissionError(13, "Permission denied")
        return real_open(file, mode, *a, **k)

    suite = load_suite(None, ["seed=0"], _grid(tmp_path, 1), str(tmp_path / "rolog"), cell_parser())
    monkeypatch.setattr(builtins, "open", denied)
    lines = []
    assert run_sweep(suite, log=lines.append, g2g=(*WORKER, str(tiny_fmnist))) == [str(tmp_path / "rolog" / "run-s0")]
    assert "FAILED (cannot write its log" in lines[-1] and "Permission denied" in lines[-1], lines
    monkeypatch.setattr(builtins, "open", real_open)
    assert RunDir(tmp_path / "rolog" / "run-s0").status() == "new"  # its claim is released


def test_S32_a_cell_resumed_under_changed_code_says_so(tiny_fmnist, tmp_path):
    from g2gnet.runs import read_run

    suite = load_suite(None, ["seed=0"], _grid(tmp_path, 1), str(tmp_path / "cv"), cell_parser())
    kw = dict(extra=["--data-dir", str(tiny_fmnist)], g2g=(*WORKER, str(tiny_fmnist)))
    assert run_sweep(suite, log=lambda s: None, **kw) == []
    cell = tmp_path / "cv" / "run-s0"
    (cell / "summary.json").unlink()  # killed between its last checkpoint and its summary
    env = json.loads((cell / "env.json").read_text())
    env["source_sha256"] = "0" * 64  # started under other code
    (cell / "env.json").write_text(json.dumps(env))
    lines = []
    assert run_sweep(suite, log=lines.append, **kw) == []
    assert any("run-s0 resumes under changed code (source 000000000000" in l for l in lines), lines
    resume = json.loads((cell / "env.json").read_text())["resumes"][-1]
    assert resume["code_changed"] is True and read_run(cell).mixed_code


def test_S33_one_suite_twice_queues_each_cell_once(tiny_fmnist, tmp_path):
    suite = load_suite(None, ["seed=0,1"], _grid(tmp_path, 1), str(tmp_path / "d"), cell_parser())
    lines = []
    assert run_sweep([suite, suite], workers=4, extra=["--data-dir", str(tiny_fmnist)], log=lines.append,
                     g2g=(*WORKER, str(tiny_fmnist))) == []
    finished = [l for l in lines if l.startswith("[")]
    assert len(finished) == 2 and all("/2]" in l and "done in" in l for l in finished), lines
    for s in (0, 1):
        log = (tmp_path / "d" / "logs" / f"run-s{s}.log").read_text()
        assert "error" not in log and json.loads((tmp_path / "d" / f"run-s{s}" / "env.json").read_text())["resumes"] == []
    other = load_suite(None, ["seed=0"], [*_grid(tmp_path, 2)], str(tmp_path / "d"), cell_parser())
    with pytest.raises(G2GError, match="two suites define .*run-s0 with different configurations"):
        run_sweep([suite, other], dry_run=True, log=lambda s: None)


def test_S24_two_identical_sweeps_on_one_out(tiny_fmnist, tmp_path):
    out = tmp_path / "two"
    argv = [*WORKER, str(tiny_fmnist), "sweep", "--out", str(out), "--no-report", "--data-dir", str(tiny_fmnist),
            "--grid", "seed=0,1", *(a for s in _grid(out, 3) for a in ("--set", s))]
    procs = []
    for _ in range(2):
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        time.sleep(0.3)
    for proc in procs:
        text, _ = proc.communicate(timeout=300)
        # each sweep ends only once every cell is finished, by whichever sweep ran it
        assert proc.returncode == 0 and "FAILED" not in text and "--resume" not in text, text
        assert all((out / f"run-s{s}" / "summary.json").exists() for s in (0, 1)), text
    for s in (0, 1):
        records = [json.loads(l)["epoch"] for l in (out / f"run-s{s}" / "metrics.jsonl").read_text().splitlines()]
        assert records == [1, 2, 3] and json.loads((out / f"run-s{s}" / "env.json").read_text())["resumes"] == []


# -- options that were silently dropped, and one configuration trained twice -------------------------
_AXES = 'out = "o"\n[fixed]\nepochs = 1\n[[grid]]\nmodel = ["dense", "er"]\nseed = [0, 1]\n'


@pytest.mark.parametrize("sets, grids, pattern", [
    (["model=g2g-index"], [], "--set model: model is a grid axis of suite"),
    (["seed=7"], [], "--set seed: seed is a grid axis of suite"),  # the seed is an axis too
    (["epochs=2", "seed=7"], ["model=er"], "--set seed: seed is a grid axis"),  # --grid replaced model only
    (["p_inter=0.1"], ["p-inter=0.05,0.1"], "--set p_inter: p-inter is a --grid axis"),  # either spelling
    (["dst-prune=random"], ["dst=magnitude:random"], "--set dst-prune: dst is a --grid axis"),
])
def test_set_of_a_grid_axis_is_an_error_not_ignored(tmp_path, capsys, sets, grids, pattern):
    path = _suite(tmp_path, _AXES)
    with pytest.raises(G2GError, match=re.escape(pattern)):
        load_suite(path, grids, sets, None, cell_parser())
    _cli_one_line(capsys, ["sweep", str(path), "--dry-run", *(a for s in sets for a in ("--set", s)),
                           *(a for g in grids for a in ("--grid", g))], pattern)
    # what the error advises: --grid replaces the suite's axis
    suite = load_suite(path, ["seed=7"], [], None, cell_parser())
    assert [(c.name, c.config.train.seed) for c in suite.cells] == [("dense-s7", 7), ("er-s7", 7)]


def test_set_of_a_grid_axis_on_the_command_line_alone(capsys):
    _cli_one_line(capsys, ["sweep", "--grid", "model=dense,er", "--set", "model=g2g-index", "--out", "o", "--dry-run"],
                  "--set model: model is a --grid axis")


@pytest.mark.parametrize("grids", [["model=dense", "model=er"], ["batch-size=32", "batch_size=64"],
                                   ["dst=magnitude:random", "dst-grow=hebbian"]])
def test_one_grid_axis_given_twice_is_an_error(tmp_path, capsys, grids):
    with pytest.raises(G2GError, match="one axis given twice; give all its values in one"):
        load_suite(None, grids, ["epochs=1"], str(tmp_path / "o"), cell_parser())
    _cli_one_line(capsys, ["sweep", *(a for g in grids for a in ("--grid", g)), "--set", "epochs=1", "--out",
                           str(tmp_path / "o"), "--dry-run"], "one axis given twice")
    assert not (tmp_path / "o").exists()


def test_one_configuration_under_two_cell_names_is_an_error_before_anything_runs(tmp_path, capsys):
    path = _suite(tmp_path, f'out = "{tmp_path / "o"}"\n[fixed]\nepochs = 1\n'
                            '[[grid]]\nmodel = ["er"]\nseed = [0, 1]\n'
                            '[[grid]]\nmodel = ["er"]\ndropout = [0.0, 0.2]\nseed = [1]\n')
    pattern = "cells er-s1 and er-dropout0.0-s1 are one configuration (seed 1): it would be trained twice"
    with pytest.raises(G2GError, match=re.escape(pattern)):
        load_suite(path, [], [], None, cell_parser())
    _cli_one_line(capsys, ["sweep", str(path)], pattern)
    assert not (tmp_path / "o").exists()
    # device and threads are not part of a run: a cell that differs only in them is the same run
    with pytest.raises(G2GError, match="are one configuration"):
        load_suite(None, ["threads=1,2"], ["epochs=1", "model=er"], str(tmp_path / "o"), cell_parser())
    # one cell listed twice under one name stays one cell (as before)
    twice = _suite(tmp_path, 'out = "o"\n[[grid]]\nmodel = ["er"]\n[[grid]]\nmodel = ["er"]\n')
    assert [c.name for c in load_suite(twice, [], [], None, cell_parser()).cells] == ["er-s0"]


def test_a_grid_over_an_option_the_model_does_not_read_is_caught_before_anything_runs(tmp_path):
    # dense ignores p_inter and a static mask every DST knob: their cells were the same run under
    # other names (and rows of their own in a report)
    with pytest.warns(UserWarning, match="dense .*does not use --p-inter"), \
            pytest.raises(G2GError, match="are one configuration"):
        load_suite(None, ["model=dense,g2g-index", "p_inter=0.05,0.1"], ["epochs=1"], str(tmp_path / "o"),
                   cell_parser())
    with pytest.warns(UserWarning, match="static mask .*does not use --dst-interval"), \
            pytest.raises(G2GError, match="are one configuration"):
        load_suite(None, ["dst_interval=10,20"], ["epochs=1", "model=er"], str(tmp_path / "o"), cell_parser())
    assert not (tmp_path / "o").exists()
    # where the model reads them, they are axes as before
    cells = load_suite(None, ["model=g2g-index", "p_inter=0.05,0.1"], ["epochs=1"], str(tmp_path / "o"),
                       cell_parser()).cells
    assert [c.config.model.p_inter for c in cells] == [0.05, 0.1]
