"""g2g sweep: cells and their names, skipping and resuming, one process per run directory, and a
sweep killed with SIGKILL and restarted that loses no cell and runs none twice."""

from __future__ import annotations

import json
import os
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
