"""Run directories, their typed records, g2g train's I/O and g2g eval: the second reliability audit's
cases in this area (../shared/docs/reliability-audit-2.md: F1, E3, E4, E6, E7, E10, C3, C6, D4,
M1, M2) and issue 15's progress lines, each reproduced and held."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import g2gnet.runs as runs
from g2gnet import G2GError, build_model, load_model
from g2gnet.cli import main
from g2gnet.layers import SparseLinear
from g2gnet.records import Checkpoint, EpochRecord, Summary
from g2gnet.runs import RUN_FILES, RunDir, read_run

SMALL = ["--dataset", "fashion-mnist", "--hidden", "32,32", "--groups", "4", "--batch-size", "64"]


def _train(data, out, *extra) -> int:
    return main(["train", "--data-dir", str(data), "--out", str(out), *SMALL, *extra])


def _eval(data, run, *extra) -> int:
    return main(["eval", str(run), "--data-dir", str(data), *extra])


def _one_line(capsys, code: int, pattern: str, status: int = 2) -> str:
    """The only line on stderr that is not a progress line is ``g2g: error: ...`` with ``pattern``."""
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.strip() and not l.startswith(("epoch ", "g2gnet: "))]
    assert code == status and "Traceback" not in err and "Warning" not in err, err
    assert len(lines) == 1 and lines[0].startswith("g2g: error: ") and pattern in lines[0], err
    return lines[0]


class _Killed(Exception):
    pass


@pytest.fixture
def cut_run(tiny_fmnist, tmp_path, monkeypatch, capsys):
    """A 3-epoch run killed after its epoch-1 checkpoint (as kill -9 would leave it)."""
    real_log = RunDir.log

    def log_then_die(self, record):
        if record.epoch == 2:
            raise _Killed
        real_log(self, record)

    monkeypatch.setattr(RunDir, "log", log_then_die)
    with pytest.raises(_Killed):
        _train(tiny_fmnist, tmp_path / "cut", "--epochs", "3")
    monkeypatch.setattr(RunDir, "log", real_log)
    capsys.readouterr()
    return tmp_path / "cut"


# -- typed records (issue 18 item 2) -----------------------------------------------------------------
def test_records_are_what_the_files_hold(tiny_fmnist, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(tiny_fmnist, out, "--epochs", "2", "--model", "g2g-index", "--dst", "magnitude:random",
                  "--dst-interval", "4") == 0
    record = read_run(out)
    on_disk = json.loads((out / "summary.json").read_text())
    assert isinstance(record.summary, Summary) and record.summary.to_dict() == on_disk
    assert record.summary.test_acc == on_disk["test_acc"] == record.summary["test_acc"]  # a mapping too
    assert record.summary.get("val_acc") is None and "val_acc" not in record.summary
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m.to_dict() for m in record.metrics] == lines
    assert all(isinstance(m, EpochRecord) for m in record.metrics)
    updates = [u for m in record.metrics for u in m.dst]
    assert [u.step for u in updates] == [4, 8, 12]  # 8 steps an epoch, every 4th (never step 0 nor the last)
    assert all(0 < l.density < 1 and l.changed >= 0 for u in updates for l in u.layers.values())
    ckpt = runs.load_checkpoint(out / "checkpoint.pt")
    assert isinstance(ckpt, Checkpoint) and (ckpt.epoch, ckpt.epochs, ckpt.step) == (2, 2, 16)
    assert ckpt.dst is not None and record.checkpoint_path == out / "checkpoint.pt"
    assert not record.mixed_code and len(record.code_versions) == 1


@pytest.mark.parametrize("change, pattern", [
    ({"test_acc": float("nan")}, "test_acc is nan, expected a finite number"),
    ({"active_params": "many"}, "active_params is 'many'"),
    ({"density": "x"}, "density is 'x'"),
])
def test_summary_record_checks_its_fields(change, pattern):
    good = {"test_acc": 0.5, "active_params": 10, "seconds_per_epoch": 1.0, "density": None}
    assert Summary.from_dict(good, "s").to_dict() == good
    with pytest.raises(G2GError, match=re.escape(pattern)):
        Summary.from_dict({**good, **change}, "s")


def test_run_status_answers_every_question(tiny_fmnist, tmp_path, cut_run):
    assert RunDir(tmp_path / "nothing").status() == "new"
    assert RunDir(cut_run).status() == "partial"
    holder = RunDir(cut_run)
    holder.open(runs.read_config(cut_run), resume=True)
    try:
        assert RunDir(cut_run).status() == "busy" and holder.status() == "partial"  # the holder knows
        assert f"pid {os.getpid()}" in RunDir(cut_run).holder()
    finally:
        holder.close()
    claim = RunDir(cut_run)
    assert claim.claim()
    try:
        assert RunDir(cut_run).status() == "busy" and not RunDir(cut_run).claim()
    finally:
        claim.close()
    assert RunDir(cut_run).status() == "partial"


# -- S32: a run resumed under changed code says so ------------------------------------------------------
def test_S32_resume_under_changed_code_is_recorded_and_read(tiny_fmnist, cut_run, capsys, monkeypatch):
    monkeypatch.setattr(runs, "source_digest", lambda: "f" * 64)  # the code changed since the first start
    assert _train(tiny_fmnist, cut_run, "--epochs", "3", "--resume") == 0
    assert "resumes under changed code" in capsys.readouterr().err
    env = json.loads((cut_run / "env.json").read_text())
    assert env["resumes"][-1]["code_changed"] is True and env["resumes"][-1]["source_sha256"] == "f" * 64
    record = read_run(cut_run)
    assert record.mixed_code and record.code_versions == [env["source_sha256"], "f" * 64]


# -- F1: a full disk -------------------------------------------------------------------------------------
def test_F1_full_disk_keeps_the_last_checkpoint_and_leaves_no_debris(tiny_fmnist, tmp_path, capsys, monkeypatch):
    real = torch.save
    calls = {"n": 0}

    def save(obj, f, *a, **k):  # the epoch-2 checkpoint does not fit: torch's zip writer fails half-way
        calls["n"] += 1
        if calls["n"] == 2:
            Path(f).write_bytes(b"PK" + b"\0" * 1000)
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 163968 vs 163896")
        return real(obj, f, *a, **k)

    class Full:
        f_bavail, f_frsize = 0, 4096

    out = tmp_path / "full"
    with monkeypatch.context() as m:
        m.setattr(runs.torch, "save", save)
        m.setattr(runs.os, "statvfs", lambda path: Full)
        line = _one_line(capsys, _train(tiny_fmnist, out, "--epochs", "3"), "No space left on device")
    assert "after epoch 2" in line and "the checkpoint after epoch 1 is kept" in line and "--resume" in line
    assert not list(out.glob("*.tmp"))
    # space again: the retry the line advises works
    assert _train(tiny_fmnist, out, "--epochs", "3", "--resume") == 0
    assert [json.loads(l)["epoch"] for l in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_F1_full_disk_on_resume_leaves_env_json_as_it_was(tiny_fmnist, cut_run, capsys, monkeypatch):
    env = (cut_run / "env.json").read_text()
    real = Path.write_text

    def write_text(self, text, *a, **k):
        if self.name == "env.json.tmp":
            real(self, text[:10])
            raise OSError(28, "No space left on device")
        return real(self, text, *a, **k)

    monkeypatch.setattr(Path, "write_text", write_text)
    _one_line(capsys, _train(tiny_fmnist, cut_run, "--epochs", "3", "--resume"), "env.json: No space left on device")
    assert (cut_run / "env.json").read_text() == env and not list(cut_run.glob("*.tmp"))


def _files(run: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in run.iterdir() if f.is_file() and not f.name.startswith(".")}


def test_a_failed_metrics_rewrite_on_resume_keeps_the_finished_epochs(tiny_fmnist, cut_run, capsys, monkeypatch):
    # A resume rewrites metrics.jsonl (to drop records after its checkpoint): a write that fails
    # half-way (a full disk, a file size limit) leaves the file as it was, not truncated.
    before = _files(cut_run)
    real = Path.write_text

    def write_text(self, text, *a, **k):
        if self.name.startswith("metrics.jsonl"):
            real(self, text[:10])
            raise OSError(27, "File too large")
        return real(self, text, *a, **k)

    monkeypatch.setattr(Path, "write_text", write_text)
    _one_line(capsys, _train(tiny_fmnist, cut_run, "--epochs", "3", "--resume"), "metrics.jsonl: File too large")
    assert _files(cut_run) == before  # nothing lost, no temp file left
    monkeypatch.setattr(Path, "write_text", real)
    assert _train(tiny_fmnist, cut_run, "--epochs", "3", "--resume") == 0
    assert [m.epoch for m in read_run(cut_run).metrics] == [1, 2, 3]


@pytest.mark.parametrize("metrics", ["", None, '{"epoch": 2}\n'], ids=["emptied", "deleted", "epoch-1-missing"])
def test_resume_refuses_a_run_whose_metrics_miss_finished_epochs(tiny_fmnist, cut_run, capsys, metrics):
    # Its checkpoint is after epoch 1: a resume would complete the run with epoch 1's record missing.
    path = cut_run / "metrics.jsonl"
    if metrics is None:
        path.unlink()
    else:
        path.write_text(metrics)
    before = _files(cut_run)
    line = _one_line(capsys, _train(tiny_fmnist, cut_run, "--epochs", "3", "--resume"), "cannot resume")
    assert "checkpoint is after epoch 1" in line and "no record of epoch(s) 1" in line
    assert _files(cut_run) == before and not (cut_run / "summary.json").exists()


def test_resume_of_a_finished_run_without_checkpoint_is_refused(tiny_fmnist, tmp_path, capsys):
    # Committed results keep no checkpoint: --resume retrained from epoch 0 over their metrics.
    out = tmp_path / "done"
    assert _train(tiny_fmnist, out, "--epochs", "2") == 0
    (out / "checkpoint.pt").unlink()
    before = _files(out)
    capsys.readouterr()
    line = _one_line(capsys, _train(tiny_fmnist, out, "--epochs", "2", "--resume"), "already finished")
    assert "nothing to resume" in line and _files(out) == before and RunDir(out).status() == "done"


# -- E3, E4: g2g eval of a run in progress or stopped ---------------------------------------------------------
def test_E3_eval_refuses_a_run_still_training_unless_asked(tiny_fmnist, cut_run, capsys):
    holder = RunDir(cut_run)
    holder.open(runs.read_config(cut_run), resume=True)  # the training process
    try:
        line = _one_line(capsys, _eval(tiny_fmnist, cut_run), "is still training")
        assert "epoch 1 of 3" in line and "--allow-partial" in line and "not committed" not in line
        assert _eval(tiny_fmnist, cut_run, "--allow-partial") == 0
        out = capsys.readouterr().out
        assert "checkpoint after epoch 1 of 3 (the run is still training)" in out
    finally:
        holder.close()


def test_E3_eval_of_a_run_that_has_no_checkpoint_yet(tiny_fmnist, tmp_path, capsys):
    holder = RunDir(tmp_path / "starting")
    holder.open(runs.Config(), resume=False)  # still loading its data: nothing written yet
    try:
        line = _one_line(capsys, _eval(tiny_fmnist, holder.path), "is still training")
        assert "no checkpoint yet" in line
    finally:
        holder.close()


def test_E4_eval_says_which_epoch_of_how_many(tiny_fmnist, tmp_path, cut_run, capsys):
    assert _eval(tiny_fmnist, cut_run) == 0
    out = capsys.readouterr().out
    assert "checkpoint after epoch 1 of 3 (the run is unfinished; continue it with g2g train --resume" in out
    done = tmp_path / "done"
    assert _train(tiny_fmnist, done, "--epochs", "2") == 0
    acc = json.loads((done / "summary.json").read_text())["test_acc"]
    capsys.readouterr()
    assert _eval(tiny_fmnist, done) == 0
    out = capsys.readouterr().out
    assert f"test accuracy {100 * acc:.2f}%" in out and f"checkpoint after epoch 2 of 2 (summary.json: {100 * acc:.2f}%)" in out


# -- E6, E7, E10: checkpoints that cannot be loaded ------------------------------------------------------------
def test_E6_random_bytes_checkpoint_is_called_corrupt_without_torch_advice(tiny_fmnist, cut_run, capsys):
    (cut_run / "checkpoint.pt").write_bytes(torch.randint(0, 256, (5000,), dtype=torch.uint8,
                                                          generator=torch.Generator().manual_seed(0)).numpy().tobytes())
    line = _one_line(capsys, _eval(tiny_fmnist, cut_run), "is unreadable")
    assert "corrupt" in line and "weights_only" not in line and "arbitrary code" not in line


def test_E7_no_torch_warning_before_the_error(tiny_fmnist, cut_run, capsys):
    with open(cut_run / "checkpoint.pt", "wb") as f:
        pickle.dump({"format": "g2gnet-checkpoint-v1", "model": {"a": 1}}, f, protocol=4)
    _one_line(capsys, _eval(tiny_fmnist, cut_run), "checkpoint")  # one line: no UserWarning before it


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_E10_load_model_onto_cuda_without_cuda(cut_run):
    with pytest.raises(G2GError, match="CUDA is not available"):
        load_model(cut_run, map_location="cuda")
    with pytest.raises(G2GError, match="CUDA is not available"):
        runs.load_checkpoint(cut_run / "checkpoint.pt", "cuda")


# -- C3, C6: configs and failed starts -------------------------------------------------------------------------
def test_C3_a_section_that_is_not_an_object_is_named(tiny_fmnist, tmp_path, cut_run, capsys):
    cfg = json.loads((cut_run / "config.json").read_text())
    cfg["model"] = [1]
    (tmp_path / "bad.json").write_text(json.dumps(cfg))
    _one_line(capsys, _train(tiny_fmnist, tmp_path / "x", "--config", str(tmp_path / "bad.json")),
              "config section 'model' must be a JSON object, got list")


def test_C3_flat_configs_of_g2gnet_0_1_are_still_read():
    from g2gnet.config import Config

    cfg = Config.from_dict({"model": "g2g-index", "hidden": [64], "dst": "magnitude:hebbian", "epochs": 2})
    assert (cfg.model.name, cfg.model.hidden, cfg.dst.label, cfg.train.epochs) == ("g2g-index", (64,),
                                                                                   "magnitude:hebbian", 2)
    with pytest.raises(G2GError, match="config section 'train' must be a JSON object, got int"):
        Config.from_dict({"train": 5, "model": {"name": "dense"}})


@pytest.mark.parametrize("args, pattern", [
    (["--model", "nosuch"], "unknown model"),
    (["--dst", "nosuch:hebbian"], "unknown prune criterion"),
    (["--frontend", "bogus"], "unknown frontend"),
    (["--labels", "bogus"], "unknown label set"),
    (["--dataset", "cifar10"], "cifar10 not found"),
    (["--val", "100000"], "val"),
    (["--model", "dense", "--groups", "8", "--dst", "magnitude:hebbian"],  # (dense reads no --groups 4)
     "DST needs a model with SparseLinear layers"),
    (["--tensorboard"], "needs the tensorboard package"),
])
def test_C6_a_failed_start_leaves_nothing_that_blocks_a_retry(tiny_fmnist, tmp_path, capsys, monkeypatch, args,
                                                              pattern):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as without the optional package
    out = tmp_path / "run"
    _one_line(capsys, _train(tiny_fmnist, out, "--epochs", "1", *args), pattern)
    assert not [f for f in RUN_FILES if (out / f).exists()] and RunDir(out).status() == "new"
    if args[0] in ("--model", "--tensorboard"):  # the corrected command runs (as a new run, not --resume)
        assert _train(tiny_fmnist, out, "--epochs", "1") == 0


# -- M1, M2: model options a mixer cannot use -------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mlp-mixer", "mlp-mixer-g2g"])
@pytest.mark.parametrize("option, pattern", [({"hidden": [64]}, "does not use --hidden"),
                                             ({"inter_tile": 8}, "does not use --inter-tile"),
                                             ({"frontend": "patch"}, "has its own patch embedding")])
def test_M1_a_mixer_rejects_the_options_it_ignores(name, option, pattern):
    with pytest.raises(G2GError, match=pattern):
        build_model(name, 3072, 10, **option)


def test_M1_through_the_cli_before_anything_is_written(tiny_fmnist, tmp_path, capsys):
    _one_line(capsys, _train(tiny_fmnist, tmp_path / "m", "--model", "mlp-mixer", "--hidden", "64"),
              "mlp-mixer does not use --hidden")
    assert not (tmp_path / "m" / "config.json").exists()


def test_M2_mixer_g2g_groups_must_divide_every_block_width():
    with pytest.raises(G2GError, match=r"groups=128 does not divide its block width\(s\) 64"):
        build_model("mlp-mixer-g2g", 3072, 10, groups=128)
    model = build_model("mlp-mixer-g2g", 3072, 10, groups=8)
    sparse = [m for m in model.blocks.modules() if isinstance(m, SparseLinear)]
    assert len(sparse) == 16  # every block MLP layer: 4 blocks x (token 2 + channel 2)


# -- issue 15 item 5: a progress line per epoch when the output is not a terminal ---------------------------------------
def test_one_progress_line_per_epoch_off_a_terminal(tiny_fmnist, tmp_path, capsys):
    assert _train(tiny_fmnist, tmp_path / "p", "--epochs", "3", "--val", "64") == 0
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.startswith("epoch ")]
    pattern = (r"epoch {e}/3: train loss \d+\.\d{{4}}, train acc \d+\.\d\d%, test acc \d+\.\d\d%, "
               r"val acc \d+\.\d\d%, \d+\.\d s, ETA \d+m\d\ds")
    assert len(lines) == 3 and all(re.fullmatch(pattern.format(e=e + 1), l) for e, l in enumerate(lines)), err
    assert lines[-1].endswith("ETA 0m00s") and "\r" not in err  # no bar redraws in a log


def test_progress_off_prints_nothing(tiny_fmnist, tmp_path, capsys):
    from g2gnet.options import ArgParser, add_config_options, config_from_args
    from g2gnet.train import train

    parser = ArgParser()
    add_config_options(parser)
    cfg = config_from_args(parser.parse_args(SMALL + ["--epochs", "1"]))
    summary = train(cfg, tmp_path / "q", data_dir=tiny_fmnist, progress="off")
    assert isinstance(summary, Summary) and capsys.readouterr().err == ""


# -- D4: torchrun, a rank killed ---------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def test_D4_a_killed_rank_stops_rank_0_with_one_line(tiny_fmnist, tmp_path):
    out = tmp_path / "ddpk"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           str(Path(__file__).with_name("tiny_worker.py")), str(tiny_fmnist), "train", *SMALL, "--data-dir",
           str(tiny_fmnist), "--threads", "1", "--epochs", "400", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 200
        while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        rank1 = [c for c in _children(proc.pid) if b"RANK=1\0" in (Path("/proc") / str(c) / "environ").read_bytes()]
        assert len(rank1) == 1, "rank 1 not found"
        os.kill(rank1[0], signal.SIGKILL)
        text, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0 and "[rank0]: Traceback" not in text and "GLHF" not in text, text
    errors = [l for l in text.splitlines() if "g2g: error:" in l]
    assert len(errors) == 1 and "is kept" in errors[0] and f"--resume --out {out}" in errors[0], text
    kept = runs.load_checkpoint(out / "checkpoint.pt").epoch
    assert f"the checkpoint after epoch {kept} is kept" in errors[0], text
