"""The reliability audit's failures (items 1-38 of ../shared/docs/reliability-audit.md), each
reproduced: a clear one-line error and nothing lost. Items 24-30 (g2g bench) are in test_bench.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import g2gnet.runs as runs
from g2gnet import G2GError, build_model
from g2gnet.cli import main
from g2gnet.runs import CHECKPOINT_FORMAT, RunDir

SMALL = ["--dataset", "fashion-mnist", "--hidden", "32,32", "--groups", "4", "--batch-size", "64"]


def _train(data, out, *extra) -> int:
    return main(["train", "--data-dir", str(data), "--out", str(out), *SMALL, *extra])


def _one_line(capsys, code: int, pattern: str, status: int = 2) -> str:
    err = capsys.readouterr().err.strip()
    assert code == status, err
    lines = [l for l in err.splitlines() if l.startswith("g2g:")]
    assert "Traceback" not in err and len(lines) == 1 and lines == err.splitlines()[-1:], err
    assert pattern in lines[0], err
    return lines[0]


@pytest.fixture
def run1(tiny_fmnist, tmp_path, capsys):
    """A finished one-epoch run."""
    out = tmp_path / "a"
    assert _train(tiny_fmnist, out, "--epochs", "1") == 0
    capsys.readouterr()
    return out


# -- integrity and lost data (1-7) ------------------------------------------------------------
def test_01_empty_checkpoint_is_one_line(tiny_fmnist, run1, capsys):
    (run1 / "checkpoint.pt").write_bytes(b"")
    _one_line(capsys, _train(tiny_fmnist, run1, "--epochs", "1", "--resume"), "is unreadable")


def test_02_failed_resume_keeps_env_json_and_a_resume_is_recorded(tiny_fmnist, run1, capsys):
    env = (run1 / "env.json").read_text()
    data = (run1 / "checkpoint.pt").read_bytes()
    (run1 / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    _one_line(capsys, _train(tiny_fmnist, run1, "--epochs", "1", "--resume"), "unreadable")
    assert (run1 / "env.json").read_text() == env  # the original start is not lost
    (run1 / "checkpoint.pt").write_bytes(data)
    assert _train(tiny_fmnist, run1, "--epochs", "1", "--resume") == 0
    record = json.loads((run1 / "env.json").read_text())
    assert record["started"] == json.loads(env)["started"] and len(record["resumes"]) == 1
    assert record["resumes"][0]["from_epoch"] == 1


def test_03_torn_last_metrics_line_is_dropped_on_resume(tiny_fmnist, tmp_path, capsys):
    out = tmp_path / "b"
    assert _train(tiny_fmnist, out, "--epochs", "1") == 0
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "st')
    (out / "summary.json").unlink()
    cfg = json.loads((out / "config.json").read_text())
    cfg["train"]["epochs"] = 2  # as if the run had been started for 2 epochs and killed
    (out / "config.json").write_text(json.dumps(cfg))
    assert _train(tiny_fmnist, out, "--epochs", "2", "--resume") == 0
    epochs = [json.loads(l)["epoch"] for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]


def test_04_a_second_process_on_a_run_directory_is_refused(tiny_fmnist, run1, capsys):
    holder = RunDir(run1)
    holder.open(runs.read_config(run1), resume=True)  # another process would hold this lock
    try:
        line = _one_line(capsys, _train(tiny_fmnist, run1, "--epochs", "1", "--resume"), "is in use by pid")
        assert str(run1) in line
    finally:
        holder.close()


def test_05_stale_metrics_in_a_non_run_directory(tiny_fmnist, tmp_path, capsys):
    out = tmp_path / "stale"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"epoch": 1}\n')
    _one_line(capsys, _train(tiny_fmnist, out, "--epochs", "1"), "holds metrics.jsonl but no config.json")
    assert (out / "metrics.jsonl").read_text() == '{"epoch": 1}\n'


def test_06_foreign_state_with_the_right_format_key(tiny_fmnist, run1, capsys):
    torch.save({"format": CHECKPOINT_FORMAT, "model": {"weights": torch.zeros(2)}, "optimizer": {},
                "scheduler": {}, "epoch": 1, "step": 1, "wall_time": 0.0}, run1 / "checkpoint.pt")
    _one_line(capsys, _train(tiny_fmnist, run1, "--epochs", "1", "--resume"), "does not match this run")


def test_07_ctrl_c_in_the_first_epoch_claims_no_checkpoint(tiny_fmnist, tmp_path, capsys, monkeypatch):
    import g2gnet.train as train_mod

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "train_step", interrupted)
    line = _one_line(capsys, _train(tiny_fmnist, tmp_path / "c", "--epochs", "2"), "no epoch had finished",
                     status=130)
    assert "kept" not in line


# -- g2g train: tracebacks -> one line (8-13) ------------------------------------------------
def test_08_out_is_an_existing_file(tiny_fmnist, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    _one_line(capsys, _train(tiny_fmnist, tmp_path / "f", "--epochs", "1"), "is a file")


def test_09_out_under_a_file(tiny_fmnist, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    _one_line(capsys, _train(tiny_fmnist, tmp_path / "f" / "sub", "--epochs", "1"), "cannot create the run directory")


def _deny(monkeypatch, method: str):
    real = getattr(Path, method)

    def denied(self, *a, **k):
        if "ro" in self.parts:
            raise PermissionError(13, "Permission denied")
        return real(self, *a, **k)

    monkeypatch.setattr(Path, method, denied)


def test_10_read_only_parent(tiny_fmnist, tmp_path, capsys, monkeypatch):
    # Modes do not stop root, so the file system's answer is simulated.
    _deny(monkeypatch, "mkdir")
    _one_line(capsys, _train(tiny_fmnist, tmp_path / "ro" / "run", "--epochs", "1"), "Permission denied")


def test_11_resume_into_a_read_only_run(tiny_fmnist, run1, capsys, monkeypatch):
    import builtins

    real_open = builtins.open

    def denied(file, mode="r", *a, **k):
        if str(file).endswith(".lock"):
            raise PermissionError(13, "Permission denied")
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr(builtins, "open", denied)
    _one_line(capsys, _train(tiny_fmnist, run1, "--epochs", "1", "--resume"), "Permission denied")


def test_12_run_directory_read_only_after_epoch_1(tiny_fmnist, tmp_path, capsys, monkeypatch):
    real = torch.save
    calls = {"n": 0}

    def save(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise PermissionError(13, "Permission denied")
        return real(obj, f, *a, **k)

    monkeypatch.setattr(runs.torch, "save", save)
    out = tmp_path / "d"
    line = _one_line(capsys, _train(tiny_fmnist, out, "--epochs", "3"), "cannot write checkpoint")
    assert "the checkpoint after epoch 1 is kept" in line
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1


def test_13_a_model_too_big_for_memory(tiny_fmnist, tmp_path):
    code = f"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))
sys.path.insert(0, {str(Path(__file__).parent)!r})
from tiny_worker import patch_tiny
from pathlib import Path
patch_tiny(Path({str(tiny_fmnist)!r}))
from g2gnet.cli import main
sys.exit(main(["train", "--data-dir", {str(tiny_fmnist)!r}, "--out", {str(tmp_path / "big")!r},
               "--model", "dense", "--hidden", "100000,100000", "--epochs", "1"]))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "cannot allocate model 'dense'" in r.stderr and "GiB" in r.stderr


# -- g2g report (14-23) -----------------------------------------------------------------------
def _report(capsys, *args) -> tuple[int, str]:
    code = main(["report", *map(str, args)])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("line, pattern", [(b"\xff\xfe junk\n", "line 2"), (b"[1, 2, 3]\n", "not an epoch record")])
def test_14_15_bad_metrics_lines(run1, capsys, line, pattern):
    with open(run1 / "metrics.jsonl", "ab") as f:
        f.write(line)
    _one_line(capsys, main(["report", str(run1)]), pattern)


@pytest.mark.parametrize("summary, pattern", [({"test_acc": "abc"}, "test_acc is 'abc'"), ({}, "test_acc is None")])
def test_16_17_bad_summaries(run1, capsys, summary, pattern):
    (run1 / "summary.json").write_text(json.dumps(summary))
    _one_line(capsys, main(["report", str(run1)]), pattern)


def test_18_report_without_matplotlib(run1, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert main(["report", str(run1), "--out", str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "matplotlib is not installed" in text and "| " in text


@pytest.mark.parametrize("content", [b"not a checkpoint", None])
def test_19_20_corrupt_or_foreign_checkpoint_in_a_report(run1, tmp_path, capsys, content):
    pytest.importorskip("matplotlib")
    if content is None:
        torch.save({"format": "something-else", "model": {}}, run1 / "checkpoint.pt")
    else:
        (run1 / "checkpoint.pt").write_bytes(content)
    assert main(["report", str(run1), "--out", str(tmp_path / "rep")]) == 0
    assert "Mask picture skipped" in (tmp_path / "rep" / "report.md").read_text()


def test_21_report_out_is_a_file(run1, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    _one_line(capsys, main(["report", str(run1), "--out", str(tmp_path / "f")]), "is a file")


def test_22_report_out_read_only(run1, tmp_path, capsys, monkeypatch):
    _deny(monkeypatch, "mkdir")
    _one_line(capsys, main(["report", str(run1), "--out", str(tmp_path / "ro" / "rep")]), "Permission denied")


def test_23_reports_never_pool_different_configurations(tiny_fmnist, tmp_path, capsys):
    for name, extra in (("a", ["--epochs", "1"]), ("b", ["--epochs", "2"]), ("c", ["--epochs", "1", "--seed", "1"])):
        assert _train(tiny_fmnist, tmp_path / "runs" / name, *extra) == 0
    capsys.readouterr()
    _one_line(capsys, main(["report", str(tmp_path / "runs"), "--by", "nosuchkey"]),
              "unknown --by key 'nosuchkey'; valid: data.dataset")
    assert main(["report", str(tmp_path / "runs"), "--by", "model"]) == 0
    table = capsys.readouterr().out
    rows = [l for l in table.splitlines() if l.startswith("| g2g-mixer")]
    # epochs differ: two rows (n=2 for the two 1-epoch seeds, n=1 for the 2-epoch run)
    assert len(rows) == 2 and {r.split("|")[3].strip() for r in rows} == {"2", "1"}, table


# -- Python API with wrong types (31-38; 31, 32 in test_layers.py) ------------------------------
@pytest.mark.parametrize("kwargs, pattern", [
    ({"hidden": 64}, "hidden must be a list of integers, got 64"),
    ({"hidden": None}, "hidden must not be None"),
    ({"hidden": ["64", "x"]}, "hidden must be a list of integers"),
    ({"groups": "8"}, "groups must be an integer"),
    ({"p_inter": "0.1"}, "p_inter must be a number"),
    ({"seed": "abc"}, "seed must be an integer"),
    ({"seed": None}, "seed must not be None"),
    ({"hidden": [64.7]}, "hidden must be a list of integers"),
])
def test_33_to_38_wrong_types_in_the_api(kwargs, pattern):
    with pytest.raises(G2GError, match=pattern.replace("(", r"\(")):
        build_model("g2g-index", 784, 10, **kwargs)


def test_inter_tile_larger_than_an_ensemble():
    with pytest.raises(G2GError, match="larger than the ensembles"):
        build_model("g2g-index", 64, 10, hidden=[64, 64], inter_tile=1000)


def test_resume_of_a_directory_that_holds_no_run(tiny_fmnist, tmp_path, capsys):
    _one_line(capsys, _train(tiny_fmnist, tmp_path / "nothing", "--epochs", "1", "--resume"), "holds no run")


def test_non_finite_learning_rate():
    from g2gnet.config import TrainConfig

    with pytest.raises(G2GError, match="lr must be a finite number"):
        TrainConfig(lr=float("inf"))
