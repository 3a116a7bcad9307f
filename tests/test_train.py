"""End-to-end training through the CLI: run directory, resume = uninterrupted, bad input (SPEC §5, §6, §9)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from g2gnet.cli import main
from g2gnet.kernels.layout import blocks_pay
from g2gnet.runs import RunDir
from g2gnet.state_compat import masks_from_state

SMALL = ["--hidden", "32,32", "--groups", "4", "--batch-size", "64", "--lr", "0.005"]


def _train(data, out, *extra):
    return main(["train", "--dataset", "fashion-mnist", "--data-dir", str(data), "--out", str(out), *SMALL, *extra])


def test_cli_run_writes_run_directory_and_learns(tiny_fmnist, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(tiny_fmnist, out, "--model", "g2g-mixer", "--epochs", "3") == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_acc"] > 0.6                 # 10 patch positions: chance is 0.1
    assert f"{100 * summary['test_acc']:.2f}%" in printed
    assert 0.2 < summary["density"] < 0.5
    assert summary["flops_per_sample"] == 2 * summary["macs_per_sample"] > 0
    for key in ("active_params", "wall_time", "seconds_per_epoch"):
        assert summary[key] > 0
    metrics = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert metrics[-1]["lr"] == pytest.approx(0.0, abs=1e-12)   # cosine schedule ends at 0
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["epochs"] == 3 and config["model"]["name"] == "g2g-mixer"
    assert config["model"]["hidden"] == [32, 32] and config["data"]["augment"] is False
    env = json.loads((out / "env.json").read_text())
    assert env["torch"] == torch.__version__ and "git_sha" in env
    assert (out / "checkpoint.pt").exists() and not list(out.glob("*.tmp"))


def test_validation_split_reported(tiny_fmnist, tmp_path):
    out = tmp_path / "run"
    assert _train(tiny_fmnist, out, "--model", "dense", "--epochs", "1", "--val", "100") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "val_acc" in summary and "val_acc" in (out / "metrics.jsonl").read_text()


class _Killed(Exception):
    pass


@pytest.mark.parametrize("extra", [[], ["--dst", "magnitude:hebbian", "--dst-interval", "5"],
                                   # R1: DST thins the ensembles' blocks below half before the kill
                                   ["--dst", "random:random", "--dst-interval", "1", "--dst-fraction", "0.5"]],
                         ids=["static", "dst", "dst-erodes-blocks"])
def test_resume_after_kill_equals_uninterrupted(tiny_fmnist, tmp_path, monkeypatch, extra):
    args = ["--model", "g2g-random", "--epochs", "3", *extra]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert _train(tiny_fmnist, full, *args) == 0

    real_log = RunDir.log

    def log_then_die(self, record):  # the process dies after epoch 2's work, before its checkpoint
        if record["epoch"] == 2:
            raise _Killed
        real_log(self, record)

    monkeypatch.setattr(RunDir, "log", log_then_die)
    with pytest.raises(_Killed):
        _train(tiny_fmnist, cut, *args)
    monkeypatch.setattr(RunDir, "log", real_log)
    state = torch.load(cut / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1
    if "0.5" in extra:  # the premise: a layout decided from this mask would have no dense blocks
        masks = masks_from_state(state["model"])
        assert all(not blocks_pay(m, *_sorted_ids(state["model"], name)) for name, m in masks.items())
    assert _train(tiny_fmnist, cut, *args, "--resume") == 0

    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(cut / "checkpoint.pt", weights_only=True)
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    strip = lambda p: [{k: v for k, v in json.loads(l).items() if k != "epoch_time"}
                       for l in (p / "metrics.jsonl").read_text().splitlines()]
    assert strip(full) == strip(cut)
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (full, cut))
    assert sa["test_acc"] == sb["test_acc"]


def _sorted_ids(state: dict, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Group ids of a layer's ensembles in the order masks_from_state sorts its mask."""
    ids = [state[f"{layer}.packed.{k}"] for k in ("out_groups", "in_groups")]
    return tuple(i[torch.argsort(i, stable=True)] for i in ids)


def _one_line_error(capsys, code, pattern):
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    lines = err.splitlines()
    # Progress notes ("g2gnet: downloading ...") may precede it; the error is one last line.
    assert "Traceback" not in err and [l for l in lines if l.startswith("g2g: error:")] == lines[-1:], err
    assert pattern in lines[-1], err


@pytest.mark.parametrize("args, pattern", [
    (["--dataset", "imagenet"], "fashion-mnist, mnist, cifar10, cifar100"),
    (["--model", "resnet"], "valid: dense, dense-matched, er, g2g-index, g2g-random, g2g-mixer"),
    (["--p-inter", "1.5"], "p_inter"),
    (["--groups", "3"], "groups=3 does not divide"),
    (["--epochs", "0"], "epochs must be >= 1"),
    (["--epochs", "two"], "invalid int value"),
    (["--batch-size", "-1"], "batch_size must be >= 1"),
    (["--frontend", "vit"], "valid: none, patch"),
    (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "tpu"], "device"),
    (["--dst", "magnitude"], "PRUNE:GROW"),
    (["--dst", "magnitude:telepathy"], "valid: hebbian, random, gradient"),
    (["--dst", "biggest:random"], "valid: magnitude, random, hebbian"),
    (["--val", "100000"], "val"),
])
def test_bad_input_is_one_line_error(tiny_fmnist, tmp_path, capsys, args, pattern):
    code = _train(tiny_fmnist, tmp_path / "run", "--epochs", "1", *args)
    _one_line_error(capsys, code, pattern)


def test_missing_data_is_one_line_error(tiny_fmnist, tmp_path, capsys):
    code = main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "empty"), *SMALL])
    _one_line_error(capsys, code, "mnist")


def test_existing_run_needs_resume_and_same_config(tiny_fmnist, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(tiny_fmnist, out, "--model", "dense", "--epochs", "1") == 0
    capsys.readouterr()
    _one_line_error(capsys, _train(tiny_fmnist, out, "--model", "dense", "--epochs", "1"), "--resume")
    _one_line_error(capsys, _train(tiny_fmnist, out, "--model", "er", "--epochs", "1", "--resume"),
                    "config differs in model")
    assert json.loads((out / "config.json").read_text())["model"]["name"] == "dense"   # nothing lost


@pytest.mark.parametrize("content, pattern", [
    (b"not a checkpoint at all", "unreadable"),
    (None, "not a g2gnet-checkpoint-v1"),
])
def test_corrupt_or_foreign_checkpoint(tiny_fmnist, tmp_path, capsys, content, pattern):
    out = tmp_path / "run"
    assert _train(tiny_fmnist, out, "--model", "dense", "--epochs", "1") == 0
    if content is None:
        torch.save({"weights": torch.zeros(2)}, out / "checkpoint.pt")
    else:
        (out / "checkpoint.pt").write_bytes(content)
    capsys.readouterr()
    _one_line_error(capsys, _train(tiny_fmnist, out, "--model", "dense", "--epochs", "1", "--resume"), pattern)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_fmnist, tmp_path, capsys, monkeypatch):
    import g2gnet.train as train_mod

    real = train_mod.F.cross_entropy
    calls = {"n": 0}

    def poisoned(logits, y, **kw):  # the 12th training batch (epoch 2) diverges
        loss = real(logits, y, **kw)
        if kw.get("reduction") is None and logits.requires_grad:
            calls["n"] += 1
            if calls["n"] == 12:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(train_mod.F, "cross_entropy", poisoned)
    out = tmp_path / "run"
    code = _train(tiny_fmnist, out, "--model", "dense", "--epochs", "3")
    _one_line_error(capsys, code, "non-finite loss")
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert not (out / "summary.json").exists()


def test_report_tables_mean_std_over_seeds(tiny_fmnist, tmp_path, capsys):
    for seed in (0, 1):
        assert _train(tiny_fmnist, tmp_path / "runs" / f"s{seed}", "--model", "dense", "--epochs", "1",
                      "--seed", str(seed)) == 0
    capsys.readouterr()
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep"), "--by", "model"]) == 0
    table = capsys.readouterr().out
    accs = [100 * json.loads((tmp_path / "runs" / f"s{s}" / "summary.json").read_text())["test_acc"] for s in (0, 1)]
    mean = sum(accs) / 2
    std = (sum((a - mean) ** 2 for a in accs)) ** 0.5   # sample std with n = 2
    assert f"| dense | 2 | {mean:.2f} ± {std:.2f} |" in table
    assert (tmp_path / "rep" / "report.md").exists()
    pytest.importorskip("matplotlib")
    assert (tmp_path / "rep" / "learning_curves.png").stat().st_size > 1000


def test_help_via_subprocess():
    for args in ([], ["train"], ["report"], ["bench"]):
        r = subprocess.run([sys.executable, "-m", "g2gnet", *args, "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "usage" in r.stdout
    r = subprocess.run([sys.executable, "-m", "g2gnet", "frobnicate"], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_resume_needs_out(capsys):
    _one_line_error(capsys, main(["train", "--resume"]), "--resume needs the --out")


def test_report_topology_table_for_dst_runs(tiny_fmnist, tmp_path, capsys):
    out = tmp_path / "runs" / "dst"
    assert _train(tiny_fmnist, out, "--model", "g2g-index", "--epochs", "2", "--dst", "magnitude:random",
                  "--dst-interval", "4") == 0
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep"), "--no-plots"]) == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "## Topology under rewiring" in text
    updates = [u for l in (out / "metrics.jsonl").read_text().splitlines() for u in json.loads(l).get("dst", [])]
    assert [u["step"] for u in updates] == [4, 8, 12]      # 8 batches per epoch, interval 4, not the last
    for u in updates:
        for layer in u["layers"].values():
            assert layer["changed"] > 0 and 0 < layer["intra_fraction"] < 1 and layer["ever_active"] >= 0.25
