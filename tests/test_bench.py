"""g2g bench: the one statistic (hand-checked with fake timers), rows that cannot contradict
themselves, the interleaving, the epoch timings of any configuration (schema, dedupe, baseline),
options derived from BenchConfig, and bad arguments as one-line errors before anything runs.
Timing values themselves are never asserted."""

import argparse
import dataclasses
import inspect
import json
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from g2gnet import bench, epoch_speed
from g2gnet.kernels import dispatch, native
from g2gnet.bench import TRAIN_MODES, BenchConfig, bench_layer, bench_model, bench_table
from g2gnet.epoch_speed import (EpochJob, bench_epochs, config_label, dense_baseline, epoch_jobs, epoch_table,
                                read_configs, time_epoch)
from g2gnet.timing import STATISTIC, compare, median_repeat, ratios, time_interleaved, time_pairs
from g2gnet.cli import build_parser, main
from g2gnet.config import Config
from g2gnet.data import load_dataset
from g2gnet.errors import G2GError

ROOT = Path(__file__).resolve().parent.parent
EPOCH_SPEED_KEYS = {"kind", "dataset", "baseline", "env", "epoch_steps", "rows"}
EPOCH_ROW_KEYS = {"label", "config", "seconds", "baseline_seconds", "ratio", "ratio_median", "ratio_min", "ratio_max"}


# -- the statistic ----------------------------------------------------------------------------------
def test_median_repeat_is_one_real_repeat():
    # The user study's contradiction: per-side medians 2.101 vs 2.264 (0.93x) beside a median
    # of pair ratios 1.67x. The median repeat is the third: its times give its ratio.
    dense, g2g = [1.0, 2.101, 5.0], [0.5, 2.264, 3.0]
    s = median_repeat(dense, g2g)
    assert (s["dense"], s["g2g"]) == (5.0, 3.0) and s["ratio"] == 5.0 / 3.0
    assert s["ratio_min"] == pytest.approx(2.101 / 2.264) and s["ratio_max"] == 2.0
    # An even count takes the lower of the two middle ratios (1, 2, 3, 4 -> 2): still a real repeat.
    s = median_repeat([4.0, 1.0, 3.0, 2.0], [1.0, 1.0, 1.0, 1.0])
    assert (s["dense"], s["g2g"], s["ratio"]) == (2.0, 1.0, 2.0)


@pytest.mark.parametrize("dense, g2g, message", [
    ([], [], "same number"), ([1.0, 2.0], [1.0], "same number"), ([1.0], [0.0], "positive"),
    ([-1.0], [1.0], "positive"),
])
def test_median_repeat_rejects_impossible_times(dense, g2g, message):
    with pytest.raises(ValueError, match=message):
        median_repeat(dense, g2g)


class _FakeClock:
    """Calls that log their names and advance a fake clock by their cost (seconds)."""

    def __init__(self):
        self.now, self.order = 0.0, []

    def call(self, name, cost):
        def run():
            self.order.append(name)
            self.now += cost
        return run

    def clock(self):
        return self.now


def test_time_pairs_alternates_sides_and_times_with_a_fake_clock():
    fake = _FakeClock()
    order = fake.order
    times = time_pairs({"dense": fake.call("d", 0.004), "sparse": fake.call("s", 0.001)}, repeats=3, warmup=1,
                       per_repeat=2, clock=fake.clock)
    assert order == ["d", "s"] + ["d", "d", "s", "s"] + ["s", "s", "d", "d"] + ["d", "d", "s", "s"]
    assert times["dense"] == pytest.approx([4.0] * 3) and times["sparse"] == pytest.approx([1.0] * 3)
    with pytest.raises(ValueError, match="two sides"):
        time_pairs({"a": lambda: None}, repeats=1)


def test_time_interleaved_rotates_three_sides_and_compare_reads_the_ratios():
    fake = _FakeClock()
    order = fake.order
    def before(name):  # untimed: a switch between builds, say (logged in capitals)
        fake.call(name.upper(), 1.0)()

    calls = {"a": fake.call("a", 0.006), "b": fake.call("b", 0.002), "c": fake.call("c", 0.003)}
    times = time_interleaved(calls, repeats=6, warmup=1, before=before, clock=fake.clock)
    # Rotations, then the same reversed: every side follows each other side equally often.
    assert "".join(order) == "AaBbCc" + "AaBbCc" + "BbCcAa" + "CcAaBb" + "CcBbAa" + "AaCcBb" + "BbAaCc"
    runs = "".join(c for c in order if c.islower())[3:]
    follows = Counter(runs[j - 1] + runs[j] for j in range(1, len(runs)) if j % 3)
    assert set(follows.values()) == {2} and len(follows) == 6
    assert times["a"] == pytest.approx([6.0] * 6) and times["c"] == pytest.approx([3.0] * 6)
    assert ratios(times, "a", "b") == pytest.approx([3.0] * 6)
    assert compare("x", times) == "x: a 6.000ms  b 2.000ms  c 3.000ms  a/b 3.000 [3.00-3.00]  a/c 2.000 [2.00-2.00]"
    with pytest.raises(ValueError, match="at least one side"):
        time_interleaved({}, repeats=1)


_ROW = re.compile(r"^\| (?P<what>[^|]+) \| (?P<mode>[^|]+) \| (?P<batch>\d+) \| \w+ \| (?P<d>[\d.]+) \| "
                  r"(?P<g>[\d.]+) \| (?P<r>[\d.]+)x \| (?P<lo>[\d.]+)-(?P<hi>[\d.]+) \|$")


def _fake_row(rng: random.Random, repeats: int) -> dict:
    def entry(batch):
        # Skewed, noisy times of very different scales: where per-side medians and pair ratios disagree.
        base = 10 ** rng.uniform(-3, 3)
        d = [base * rng.lognormvariate(0, 0.5) for _ in range(repeats)]
        s = [base * rng.uniform(0.2, 3) * rng.lognormvariate(0, 0.5) for _ in range(repeats)]
        return bench._entry({"dense": d, "sparse": s}, batch, "native", 1)

    return {"width": 64, "inter_tile": 1, "dtype": "float32", "modes": {m: entry(256) for m in TRAIN_MODES},
            "inference": [entry(b) for b in (1, 8, 64, 256)]}


def test_no_table_row_contradicts_itself():
    rng = random.Random(0)
    rows = [_fake_row(rng, rng.choice([1, 2, 3, 4, 15])) for _ in range(60)]
    text = bench_table(rows, [], 15)
    assert "median repeat" in text.splitlines()[0]
    lines = [m for m in map(_ROW.match, text.splitlines()) if m]
    assert len(lines) == 60 * 7
    for m in lines:
        d, g, r, lo, hi = (float(m[k]) for k in ("d", "g", "r", "lo", "hi"))
        # The shown speed-up is the ratio of the shown times (up to their rounding: 4 significant
        # digits each, the speed-up to 0.01), and lies within the shown range.
        assert abs(r - d / g) <= 0.005 + 2e-3 * r, m.group(0)
        assert (r >= 1.0 if d > g else True) and (r <= 1.0 if d < g else True), m.group(0)
        assert lo <= r <= hi
    for row in rows:  # and in the JSON, exactly
        for e in [*row["modes"].values(), *row["inference"]]:
            assert e["ratio"] == e["dense_ms"] / e["sparse_ms"] == e["ratio_median_of_pairs"]
            assert e["dense_ms"] in e["dense_times_ms"] and e["sparse_ms"] in e["sparse_times_ms"]


def test_the_user_study_row_reads_consistently():
    e = bench._entry({"dense": [1.0, 2.101, 5.0], "sparse": [0.5, 2.264, 3.0]}, 16, "native", 1)
    row = {"width": 2048, "inter_tile": 1, "dtype": "float32", "modes": {"forward": e}, "inference": []}
    assert "| 2048x2048 tile 1 float32 | forward | 16 | native | 5.000 | 3.000 | 1.67x | 0.93-2.00 |" in \
        bench_table([row], [], 3)


# -- layer and model tables ---------------------------------------------------------------------------
def _check_entry(e: dict, repeats: int) -> None:
    assert len(e["dense_times_ms"]) == len(e["sparse_times_ms"]) == repeats
    assert e["ratio"] == e["dense_ms"] / e["sparse_ms"] and e["ratio_min"] <= e["ratio"] <= e["ratio_max"]
    path = e["path"].removesuffix(" stacked")  # a model whose hidden blocks ran as one stack says so
    assert set(path.split("+")) <= {"reference", *dispatch.PATHS}  # the layers' paths, as they ran


def test_layer_rows_training_and_inference(monkeypatch):
    monkeypatch.setattr(bench, "ROWS_PER_REPEAT", 4)
    cfg = BenchConfig(widths=(64,), batch=8, infer_batches=(1, 4, 8), repeats=3, warmup=1)
    row = bench_layer(64, cfg)
    assert row["width"] == 64 and row["batch"] == 8 and row["repeats"] == 3 and 0.2 < row["density"] < 0.5
    assert list(row["modes"]) == ["forward", "forward_backward", "step"]
    assert [e["batch"] for e in row["inference"]] == [1, 4, 8]
    assert [e["calls_per_repeat"] for e in row["inference"]] == [4, 1, 1]
    for e in [*row["modes"].values(), *row["inference"]]:
        _check_entry(e, 3)


def test_bench_layer_takes_every_setting_from_bench_config():
    # code review row 1: bench_layer had its own repeats default (20) beside the knob's (15)
    assert list(inspect.signature(bench_layer).parameters) == ["width", "cfg", "seed"]
    row = bench_layer(32, BenchConfig(widths=(32,), batch=4, repeats=2, warmup=0, modes=("forward",)))
    assert row["repeats"] == 2 and len(row["modes"]["forward"]["dense_times_ms"]) == 2 and row["inference"] == []


def test_model_rows(monkeypatch):
    monkeypatch.setattr(bench, "ROWS_PER_REPEAT", 1)
    cfg = BenchConfig(batch=4, infer_batches=(2, 32), modes=("step", "inference"), repeats=1, warmup=0)
    row = bench_model(cfg)
    assert row["model"] == "g2g-mixer" and row["shape"] == "784-1024-1024-1024-10" and 0.2 < row["density"] < 0.3
    assert list(row["modes"]) == ["step"] and [e["batch"] for e in row["inference"]] == [2, 32]
    for e in [*row["modes"].values(), *row["inference"]]:
        _check_entry(e, 1)
    if native.available():  # the hidden blocks run as one (kernels/chain.py): the inference kernels' chain
        # at batch 2, the batched kernels' stack at 32 and in training
        assert [e["path"] for e in row["inference"]] == ["infer stacked", "native stacked"]
        assert row["modes"]["step"]["path"] == "native stacked"


def test_whole_bench_cli_with_inference_rows(tmp_path):
    # In a fresh process: a training step after an inference_mode forward on the native path
    # failed in this process's kernels (issue 16 item 3), and later tests train.
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "-m", "g2gnet", "bench", "--widths", "256", "--batch", "64", "--repeats", "1",
                        "--warmup", "0", "--infer-batches", "64,128", "--tables", "layer", "--json", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "median repeat" in r.stdout and "| 256x256 tile 1 float32 | inference | 128 |" in r.stdout
    doc = json.loads(out.read_text())
    assert doc["kind"] == "bench" and doc["models"] == [] and doc["statistic"] == STATISTIC
    # dense timed as plain PyTorch runs it: g2gnet's allocator setting kept out of the bench's process
    assert doc["allocator"] in ("glibc's defaults", "not glibc") and "allocator" not in r.stderr
    layer = doc["layers"][0]
    assert layer["width"] == 256 and [e["batch"] for e in layer["inference"]] == [64, 128]
    assert doc["machine"]["git_sha"] is None or len(doc["machine"]["git_sha"]) == 40


def test_summarize_reads_new_and_old_bench_files(tmp_path):
    rng = random.Random(1)
    row = _fake_row(rng, 3)
    new = {"kind": "bench", "machine": {"threads": 2}, "layers": [row], "models": [],
           "epochs": {"kind": "epoch-speed", "dataset": "cifar10", "rows": [{"label": "g2g-index p_inter=0.01",
                                                                              "ratio_median": 2.5}]}}
    old = {"machine": {"threads": 2}, "layers": [{"width": 64, "inter_tile": 1, "modes": {
        m: {"ratio_median_of_pairs": 2.0} for m in TRAIN_MODES}}],
           "epochs": {"dataset": "fashion-mnist", "median_seconds": {"dense": 6.0, "g2g-mixer": 3.0}}}
    paths = []
    for name, doc in (("new.json", new), ("old.json", old)):
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps(doc))
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "summarize.py"), *map(str, paths)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "| layer 64 tile 1 | 2 |" in r.stdout and "| batch 1 |" in r.stdout
    assert "epoch cifar10 g2g-index p_inter=0.01: speed-up vs dense 2.50x" in r.stdout
    assert "epoch fashion-mnist g2g-mixer: speed-up vs dense 2.00x" in r.stdout


# -- epochs of any configuration ----------------------------------------------------------------
def _config(model="g2g-index", seed=0, dataset="fashion-mnist", **model_options) -> Config:
    opts = {"hidden": (32, 32), "groups": 4, **model_options}
    return Config().replace(data={"dataset": dataset}, model={"name": model, **opts}, train={"seed": seed})


def test_epoch_jobs_time_each_configuration_once_against_its_dense():
    configs = [_config(p_inter=0.01, seed=0), _config(p_inter=0.01, seed=1), _config(p_inter=0.02),
               _config("dense"), _config("dense", dropout=0.1),
               _config(inter_tile=2, seed=2).replace(dst={"prune": "magnitude", "grow": "random"})]
    jobs = epoch_jobs(configs)
    assert [j.label for j in jobs] == ["g2g-index hidden=32,32 groups=4 p_inter=0.01",
                                       "g2g-index hidden=32,32 groups=4 p_inter=0.02",
                                       "dense hidden=32,32 dropout=0.1",
                                       "g2g-index hidden=32,32 groups=4 inter_tile=2 dst=magnitude:random"]
    assert jobs[0].config.train.seed == 0 and jobs[0].config.train.epochs == 20  # resolved
    for job in jobs:
        b = job.baseline
        assert b.model.name == "dense" and b.model.hidden == (32, 32) and b.model.dropout == 0.0
        assert not b.dst.enabled and b.data == job.config.data and b.train == job.config.train
    with pytest.raises(G2GError, match="several datasets"):
        epoch_jobs([_config(), _config(dataset="cifar10")])


def test_config_label_names_what_differs_from_the_default():
    assert config_label(Config().replace(data={"dataset": "cifar10"})) == "g2g-mixer"
    assert config_label(Config().replace(data={"dataset": "cifar10"}, train={"epochs": 100, "seed": 4})) == \
        "g2g-mixer epochs=100"


def test_bench_epochs_interleaves_pairs_and_reports_per_repeat_ratios():
    jobs = [EpochJob("a", _config(p_inter=0.01), dense_baseline(_config(p_inter=0.01))),
            EpochJob("b", _config(p_inter=0.02), dense_baseline(_config(p_inter=0.02)))]
    seconds = {("dense", 0): 8.0, ("dense", 1): 9.0, ("dense", 2): 8.0,
               ("g2g-index", 0): 4.0, ("g2g-index", 1): 3.0, ("g2g-index", 2): 5.0}
    calls = []

    def fake(c: Config, repeat: int) -> float:
        calls.append((c.model.name, c.model.p_inter if c.model.name != "dense" else None, repeat))
        return seconds[(c.model.name, repeat)]

    doc = bench_epochs(jobs, BenchConfig(epoch_repeats=3, epoch_steps=7), time_one=fake)
    d, a, b = ("dense", None), ("g2g-index", 0.01), ("g2g-index", 0.02)
    assert [c[:2] for c in calls] == [d, a, b, d,  # repeat 0: job a dense first, job b itself first
                                      a, d, d, b,  # repeat 1: the other way round
                                      d, a, b, d]
    assert [c[2] for c in calls] == [0] * 4 + [1] * 4 + [2] * 4
    assert set(doc) == EPOCH_SPEED_KEYS and doc["kind"] == "epoch-speed" and doc["baseline"] == "dense"
    assert doc["dataset"] == "fashion-mnist" and doc["epoch_steps"] == 7 and "source_sha256" in doc["env"]
    row = doc["rows"][0]
    assert set(row) == EPOCH_ROW_KEYS and row["label"] == "a" and row["config"] == jobs[0].config.to_dict()
    assert row["seconds"] == [4.0, 3.0, 5.0] and row["baseline_seconds"] == [8.0, 9.0, 8.0]
    assert row["ratio"] == [2.0, 3.0, 1.6]
    assert (row["ratio_median"], row["ratio_min"], row["ratio_max"]) == (2.0, 1.6, 3.0)
    assert "| a | 8.000 | 4.000 | 2.00x | 1.60-3.00 |" in epoch_table(doc)
    assert "the first 7 steps of each epoch" in epoch_table(doc)


def test_time_epoch_runs_warmup_then_the_asked_steps(tiny_fmnist, monkeypatch):
    steps = []
    real = epoch_speed.train_step
    monkeypatch.setattr(epoch_speed, "train_step", lambda *a: steps.append(1) or real(*a))
    ds = load_dataset("fashion-mnist", tiny_fmnist)  # 512 images: 2 batches of 256
    cfg = _config("g2g-mixer").resolve(20, False)
    assert time_epoch(cfg, ds, BenchConfig(warmup=1, epoch_steps=1), repeat=0) > 0 and len(steps) == 2
    steps.clear()
    assert time_epoch(cfg, ds, BenchConfig(warmup=0), repeat=0) > 0 and len(steps) == 2  # the whole epoch
    steps.clear()
    dst = cfg.replace(dst={"prune": "magnitude", "grow": "random", "interval": 1})  # DST updates run too
    assert time_epoch(dst, ds, BenchConfig(warmup=0, epoch_steps=5), repeat=1) > 0 and len(steps) == 2


def test_read_configs_from_files_run_dirs_globs_and_suites(tmp_path):
    for seed in (0, 1):
        run = tmp_path / "runs" / f"g2g-index-s{seed}"
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps(_config(seed=seed).to_dict()))
    suite = tmp_path / "s.toml"
    suite.write_text('out = "x"\n[fixed]\nhidden = [32, 32]\ngroups = 4\n[[grid]]\nmodel = ["g2g-mixer"]\n'
                     'seed = [0, 1]\n')
    configs = read_configs([str(tmp_path / "runs" / "g2g-index-s0" / "config.json"),
                            str(tmp_path / "runs" / "g2g-index-s1"), str(tmp_path / "runs" / "*"), str(suite)])
    assert [(c.model.name, c.train.seed) for c in configs] == [("g2g-index", 0), ("g2g-index", 1), ("g2g-index", 0),
                                                              ("g2g-index", 1), ("g2g-mixer", 0), ("g2g-mixer", 1)]
    assert len(epoch_jobs(configs)) == 2
    with pytest.raises(G2GError, match="matches no file"):
        read_configs([str(tmp_path / "nothing" / "*")])
    with pytest.raises(G2GError, match="not found"):
        read_configs([str(tmp_path / "runs")])


def test_epoch_cli_writes_the_epoch_speed_document(tiny_fmnist, tmp_path, capsys):
    for seed in (0, 1):
        (tmp_path / f"c{seed}.json").write_text(json.dumps(_config("g2g-mixer", seed=seed).to_dict()))
    out, everything = tmp_path / "fashion-mnist.json", tmp_path / "all.json"
    assert main(["bench", "--tables", "none", "--epoch-config", str(tmp_path / "c0.json"), str(tmp_path / "c1.json"),
                 "--epoch-repeats", "2", "--epoch-steps", "1", "--warmup", "0", "--data-dir", str(tiny_fmnist),
                 "--epoch-json", str(out), "--json", str(everything)]) == 0
    doc = json.loads(out.read_text())
    assert set(doc) == EPOCH_SPEED_KEYS and len(doc["rows"]) == 1 and doc["epoch_steps"] == 1
    row = doc["rows"][0]
    assert set(row) == EPOCH_ROW_KEYS and len(row["seconds"]) == len(row["baseline_seconds"]) == 2
    assert row["ratio"] == [b / s for b, s in zip(row["baseline_seconds"], row["seconds"])]
    assert row["ratio_min"] <= row["ratio_median"] <= row["ratio_max"]
    assert json.loads(everything.read_text())["epochs"] == doc
    assert "| g2g-mixer hidden=32,32 groups=4 |" in capsys.readouterr().out


# -- options ------------------------------------------------------------------------------------------
def _bench_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["bench"]


def test_every_bench_option_has_help_and_comes_from_a_knob():
    actions = [a for a in _bench_parser()._actions if a.dest != "help"]
    assert all(a.help and len(a.help) > 10 for a in actions)
    fields = {f.name: f for f in dataclasses.fields(BenchConfig)}
    assert {a.dest for a in actions} == set(fields) | {"data_dir", "json", "epoch_json"}
    for a in actions:
        if a.dest in fields:
            f = fields[a.dest]
            assert a.help.startswith(f.metadata["help"]) and a.default is argparse.SUPPRESS
            if f.default is not None:
                shown = ",".join(map(str, f.default)) or "none" if isinstance(f.default, tuple) else f.default
                assert a.help.endswith(f"(default: {shown})")


def test_bench_options_build_the_bench_config(monkeypatch):
    seen = []
    monkeypatch.setattr(bench, "run", lambda cfg, **kw: seen.append((cfg, kw)))
    assert main(["bench"]) == 0 and seen[-1][0] == BenchConfig()
    assert main(["bench", "--widths", "32,64", "--infer-batches", "1,8", "--modes", "inference", "--tables", "none",
                 "--epoch", "g2g-mixer,er", "--epoch-config", "a.json", "b", "--epoch-config", "c.toml",
                 "--epoch-steps", "5", "--epoch-json", "e.json"]) == 0
    cfg, kw = seen[-1]
    assert cfg == BenchConfig(widths=(32, 64), infer_batches=(1, 8), modes=("inference",), tables=(),
                              epoch_models=("g2g-mixer", "er"), epoch_configs=("a.json", "b", "c.toml"), epoch_steps=5)
    assert kw["epoch_json"] == Path("e.json") and kw["json_path"] is None


@pytest.mark.parametrize("args, pattern", [
    (["--dtype", "float64"], "valid: float32, bfloat16, float16"),
    (["--dtype", "bfloat16"], "CUDA only"),
    (["--repeats", "0"], "repeats must be >= 1"),
    (["--warmup", "-1"], "warmup must be >= 0"),
    (["--batch", "0"], "batch must be >= 1"),
    (["--batch", "-1"], "batch must be >= 1"),
    (["--threads", "0"], "threads must be >= 1"),
    (["--infer-batches", "1,0"], "infer_batches must be batch sizes >= 1"),
    (["--modes", "backward"], "modes must be a list of forward, forward_backward, step, inference"),
    (["--modes", "none"], "(at least one)"),
    (["--tables", "layer,epoch"], "tables must be a list of layer, model"),
    (["--tables", "none"], "nothing to time"),
    (["--model", "resnet"], "unknown model 'resnet'"),
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["--epoch", "dense,nope"], "unknown model 'nope'"),
    (["--epoch", "dense", "--epoch-repeats", "0"], "epoch_repeats must be >= 1"),
    (["--epoch-config", "x.json", "--epoch-steps", "0"], "epoch_steps must be >= 1"),
    (["--epoch-config", "/nonexistent/config.json"], "not found"),
    (["--epoch-config", "/nonexistent/*/config.json"], "matches no file"),
    (["--epoch-json", "/tmp/e.json"], "no epochs to time"),
    (["--epoch", "dense"], "dense is the baseline"),
    (["--widths", "1000000"], "GiB"),
    (["--json", "/nonexistent/dir/b.json"], "does not exist"),
    (["--epoch-json", "/nonexistent/dir/e.json"], "does not exist"),
    (["--widths", "abc"], "expected comma-separated integers"),
])
def test_bad_bench_arguments_are_one_line_errors(capsys, args, pattern):
    assert main(["bench", "--widths", "32", "--repeats", "1", *args]) == 2
    err = capsys.readouterr()
    assert err.out == "" and len(err.err.strip().splitlines()) == 1 and pattern in err.err, err.err


def test_epoch_configs_of_two_datasets_are_one_line_errors(tmp_path, capsys):
    for name, dataset in (("a", "fashion-mnist"), ("b", "cifar10")):
        (tmp_path / f"{name}.json").write_text(json.dumps(_config(dataset=dataset).to_dict()))
    configs = [str(tmp_path / "a.json"), str(tmp_path / "b.json")]
    assert main(["bench", "--tables", "none", "--epoch-config", *configs]) == 2
    assert "several datasets (cifar10, fashion-mnist)" in capsys.readouterr().err
