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
                                   ["--dst", "random:random", "--dst-interval", "1", "--dst-fraction", "0.5"],
                                   # dropout draws from torch's global generator: seeded every epoch
                                   ["--dropout", "0.3"]],
                         ids=["static", "dst", "dst-erodes-blocks", "dropout"])
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


def test_dropout_runs_of_one_seed_are_identical(tiny_fmnist, tmp_path):
    # Dropout draws from torch's global generator: the run seeds it (from seed and epoch), whatever
    # state the caller left it in, and gives the caller's state back.
    args = ["--model", "g2g-random", "--epochs", "2", "--dropout", "0.3"]
    torch.rand(3)
    before = torch.get_rng_state()
    assert _train(tiny_fmnist, tmp_path / "a", *args) == 0
    assert torch.equal(torch.get_rng_state(), before)  # the caller's stream is left as it was
    torch.rand(5)  # another caller state: the second run must not depend on it
    assert _train(tiny_fmnist, tmp_path / "b", *args) == 0
    strip = lambda p: [{k: v for k, v in json.loads(l).items() if k != "epoch_time"}
                       for l in (p / "metrics.jsonl").read_text().splitlines()]
    assert strip(tmp_path / "a") == strip(tmp_path / "b")
    a, b = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=True)["model"] for d in ("a", "b"))
    assert all(torch.equal(v, b[k]) for k, v in a.items())
    assert _train(tiny_fmnist, tmp_path / "c", *args, "--seed", "1") == 0  # the seed does change the masks
    assert strip(tmp_path / "c") != strip(tmp_path / "a")


def test_dropout_seed_of_each_epoch_and_rank():
    from g2gnet.train import _dropout_seed, _epoch_generator

    seeds = {(s, e, r): _dropout_seed(s, e, r) for s in (0, 1, 2**32 - 1) for e in (0, 1, 39) for r in (0, 1, 7)}
    assert len(set(seeds.values())) == len(seeds)  # ranks, epochs and seeds each draw their own masks
    assert all(0 <= v < 2**63 and v % 2**32 != (s * 1_000_003 + e) % 2**32 for (s, e, _), v in seeds.items())
    assert _dropout_seed(3, 5, 1) == _dropout_seed(3, 5, 1)
    # the data order's stream is unchanged
    assert torch.randperm(8, generator=_epoch_generator(2, 3)).tolist() == \
        torch.randperm(8, generator=torch.Generator().manual_seed(2 * 1_000_003 + 3)).tolist()


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


@pytest.mark.parametrize("seed", ["100000000000000", "18500000000000", "4294967296", "-1"])
def test_seed_out_of_range_is_one_line_error_before_anything_is_written(tiny_fmnist, tmp_path, capsys, seed):
    # A seed of 1.85e13 and more overflowed the data order's seed * 1_000_003 + epoch after
    # config.json and env.json were written; from 2^32 on, seeds draw a smaller seed's masks.
    out = tmp_path / "run"
    code = _train(tiny_fmnist, out, "--model", "g2g-random", "--epochs", "1", "--seed", seed)
    _one_line_error(capsys, code, "seed must be in [0, 4294967295]")
    assert not out.exists() or not list(out.glob("*.json"))
    assert _train(tiny_fmnist, out, "--model", "g2g-random", "--epochs", "1", "--seed", "4294967295") == 0  # retry
    assert json.loads((out / "config.json").read_text())["train"]["seed"] == 4294967295


def _config_json(tmp_path, dataset="fashion-mnist", epochs=20, augment=False):
    from g2gnet.config import Config

    path = tmp_path / "config.json"
    path.write_text(json.dumps(Config().replace(data={"dataset": dataset, "augment": augment},
                                                train={"epochs": epochs}).to_dict()))
    return path


def test_config_with_another_dataset_asks_for_its_dataset_defaults(tmp_path, capsys):
    # config.json holds resolved values: F-MNIST's 20 epochs and no augmentation cannot be told from
    # choices, so a --dataset whose defaults differ needs them given (never CIFAR-10 at F-MNIST's).
    path = _config_json(tmp_path)
    out = tmp_path / "run"
    code = main(["train", "--config", str(path), "--dataset", "cifar10", "--out", str(out)])
    _one_line_error(capsys, code, "whose epochs 20 and augment false may be fashion-mnist's defaults, not a choice: "
                                  "give --epochs N and --augment or --no-augment (cifar10's defaults: epochs 30, "
                                  "augment true)")
    assert not out.exists()
    code = main(["train", "--config", str(path), "--dataset", "cifar10", "--epochs", "5", "--out", str(out)])
    _one_line_error(capsys, code, "augment false may be fashion-mnist's default, not a choice: give --augment or")
    from g2gnet.cli import build_parser
    from g2gnet.options import config_from_args
    from g2gnet.train import check_config

    def resolved(*argv):
        cfg = check_config(config_from_args(build_parser().parse_args(["train", "--config", str(path), *argv])))
        return cfg.data.dataset, cfg.train.epochs, cfg.data.augment

    assert resolved("--dataset", "cifar10", "--epochs", "30", "--augment") == ("cifar10", 30, True)
    assert resolved("--dataset", "cifar10", "--epochs", "7", "--no-augment") == ("cifar10", 7, False)
    assert resolved("--dataset", "mnist") == ("mnist", 20, False)  # the same defaults: nothing to ask
    assert resolved("--dataset", "fashion-mnist", "--epochs", "3") == ("fashion-mnist", 3, False)
    path = _config_json(tmp_path, epochs=4)  # not F-MNIST's default: a choice, kept
    assert resolved("--dataset", "mnist") == ("mnist", 4, False)
    assert resolved("--dataset", "cifar10", "--augment") == ("cifar10", 4, True)
    code = main(["train", "--config", str(path), "--dataset", "cifar100", "--out", str(out)])
    _one_line_error(capsys, code, "augment false may be fashion-mnist's default")  # only what is ambiguous
    assert not out.exists()


def test_missing_data_is_one_line_error(tiny_fmnist, tmp_path, capsys):
    code = main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "empty"), *SMALL])
    _one_line_error(capsys, code, "mnist")


def test_existing_run_needs_resume_and_same_config(tiny_fmnist, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(tiny_fmnist, out, "--model", "dense", "--epochs", "1") == 0
    capsys.readouterr()
    _one_line_error(capsys, _train(tiny_fmnist, out, "--model", "dense", "--epochs", "1"), "--resume")
    _one_line_error(capsys, _train(tiny_fmnist, out, "--model", "er", "--epochs", "1", "--resume"),
                    "model dense, not er")
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


def test_options_the_run_does_not_read_are_recorded_at_their_defaults(tiny_fmnist, tmp_path, capsys):
    # a dense run given --p-inter, or a static one given --dst-interval, was labelled with them
    out = tmp_path / "run"
    assert main(["train", "--dataset", "fashion-mnist", "--data-dir", str(tiny_fmnist), "--out", str(out),
                 "--model", "dense", "--hidden", "32,32", "--batch-size", "64", "--epochs", "1",
                 "--p-inter", "0.05", "--dst-interval", "7"]) == 0
    err = capsys.readouterr().err
    assert ("g2g: warning: dense with a static mask does not use --p-inter, --dst-interval: the run records "
            "their defaults\n") in err and "Warning" not in err
    config = RunDir(out).config()
    assert config.model.p_inter == 0.15 and config.dst.interval == 1000
