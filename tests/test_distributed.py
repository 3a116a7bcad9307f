"""Data parallel (gloo, 2 CPU processes): every DST rule keeps identical masks on all ranks, and a
2-process run equals the 1-process run with the same global batch (static: to float tolerance;
DST: the same masks up to ties); torchrun end to end, with a resume."""

from __future__ import annotations

import copy
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from g2gnet.kernels.layout import blocks_pay
from g2gnet.state_compat import masks_from_state
import torch.distributed as dist
import torch.multiprocessing as mp

from g2gnet import build_model
from g2gnet.distributed import World
from g2gnet.dst import GROW, PRUNE, DynamicSparsity
from g2gnet.optim import adam
from g2gnet.train import _ddp, train_step

PAIRS = list(itertools.product(PRUNE, GROW))
STEPS, BATCH = 8, 32


def _batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(500 + step)
    return torch.randn(BATCH, 64, generator=g), torch.randint(0, 10, (BATCH,), generator=g)


def _train(world: World, prune: str | None, grow: str | None) -> dict:
    model = build_model("g2g-mixer", 64, 10, hidden=[64, 64], groups=4, seed=0)
    opt = adam(model.parameters(), lr=1e-2)
    dst = None if prune is None else DynamicSparsity(model, opt, prune=prune, grow=grow, interval=2, fraction=0.2,
                                                     seed=0, check=True)
    net = _ddp(model, torch.device("cpu")) if world.size > 1 else model
    for step in range(STEPS):
        x, y = _batch(step)
        train_step(net, opt, world.shard(x), world.shard(y), world.size / BATCH)
        if dst is not None:
            dst.step()  # raises if the masks differ across ranks
    return {k: v for k, v in model.state_dict().items()}


CUT = 2  # a checkpoint after this many steps, inside the window ("all") of the update at step 4


def _windowed(world: World, steps: range, state: dict | None = None) -> tuple[dict, dict]:
    """hebbian:gradient with the whole interval as window, over ``steps``, from ``state`` (the
    model, optimizer and DST states of a checkpoint); returns the model's state and the checkpoint
    states after the last step (DST's: a collective of all ranks)."""
    model = build_model("g2g-mixer", 64, 10, hidden=[64, 64], groups=4, seed=0)
    opt = adam(model.parameters(), lr=1e-2)
    dst = DynamicSparsity(model, opt, prune="hebbian", grow="gradient", interval=4, fraction=0.2, window="all",
                          seed=0)
    if state is not None:
        state = copy.deepcopy(state)  # as loaded from disk: a loaded optimizer's state aliases its tensors
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        dst.load_state_dict(state["dst"])
    net = _ddp(model, torch.device("cpu")) if world.size > 1 else model
    for step in steps:
        x, y = _batch(step)
        train_step(net, opt, world.shard(x), world.shard(y), world.size / BATCH if world.size > 1 else None)
        dst.step()
    return dict(model.state_dict()), {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                      "dst": dst.state_dict()}


def _worker(rank: int, size: int, init: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=size)
    world = World(size, rank, rank)
    results = {"static": _train(world, None, None)}
    for prune, grow in PAIRS:
        results[f"{prune}:{grow}"] = _train(world, prune, grow)
    results["window uncut"], _ = _windowed(world, range(STEPS))
    _, checkpoint = _windowed(world, range(CUT))
    shared = [checkpoint]  # rank 0 writes the checkpoint; every rank resumes from it
    dist.broadcast_object_list(shared, src=0)
    checkpoint = shared[0]
    results["window resumed"], _ = _windowed(world, range(CUT, STEPS), checkpoint)
    results["window checkpoint"] = checkpoint
    torch.save(results, f"{out}.{rank}")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> list[dict]:
    d = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, str(d / "init"), str(d / "out")), nprocs=2, join=True)
    return [torch.load(d / f"out.{r}", weights_only=True) for r in range(2)]


def test_masks_and_weights_identical_across_ranks(two_ranks):
    a, b = two_ranks
    for case in a:
        if case == "window checkpoint":  # a checkpoint's states, not a model's
            continue
        for key in a[case]:
            assert torch.equal(a[case][key], b[case][key]), f"{case}: {key} differs between the ranks"


def test_resume_inside_a_dst_window_equals_the_uninterrupted_run(two_ranks):
    """Each rank holds the evidence (Hebbian sums, gradients) of its own share of the window's
    batches: the checkpoint keeps every rank's, and a resume with as many processes rewires
    exactly as the uninterrupted run (it had kept rank 0's alone, which every rank then loaded)."""
    for rank, results in enumerate(two_ranks):
        uncut, resumed = results["window uncut"], results["window resumed"]
        for key, value in uncut.items():
            assert torch.equal(value, resumed[key]), f"rank {rank}: {key} differs after the resume"
    evidence = two_ranks[0]["window checkpoint"]["dst"]["recorder"]["ranks"]
    assert [r["activity"]["blocks.0.linear"]["n"] for r in evidence] == [CUT * BATCH // 2] * 2  # each its half


def test_one_process_resumes_a_two_process_dst_window(two_ranks):
    """Another number of processes: the checkpoint's evidence of both ranks, combined, goes to the
    one process, which then rewires as a one-process run from the start would (up to ties)."""
    torch.set_num_threads(1)
    uncut, _ = _windowed(World(), range(STEPS))
    resumed, _ = _windowed(World(), range(CUT, STEPS), two_ranks[0]["window checkpoint"])
    for key, value in uncut.items():
        if key.endswith("mask_bits"):
            differ = int(torch.count_nonzero(value ^ resumed[key]))
            assert differ <= 4, f"{key} differs in {differ} bits"


@pytest.mark.parametrize("case", ["static", *(f"{p}:{g}" for p, g in PAIRS)])
def test_two_processes_equal_one(two_ranks, case):
    torch.set_num_threads(1)
    prune, grow = (None, None) if case == "static" else case.split(":")
    one = _train(World(), prune, grow)
    two = two_ranks[0][case]
    for key, value in one.items():
        if key.endswith("mask_bits"):
            differ = int(torch.count_nonzero(value ^ two[key]))
            # Ties (equal scores, e.g. Hebbian zeros of dead units) may break either way once the
            # float sums of two ranks round differently; anything beyond a few bits is a bug.
            assert differ <= 4, f"{case}: {key} differs in {differ} bits"
        elif case == "static":
            torch.testing.assert_close(two[key], value, rtol=1e-4, atol=1e-5, msg=f"{case}: {key}")


def _torchrun(data: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           str(Path(__file__).with_name("tiny_worker.py")), str(data), "train", "--dataset", "fashion-mnist",
           "--data-dir", str(data), "--hidden", "32,32", "--groups", "4", "--batch-size", "64", "--threads", "1",
           "--out", str(out), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_torchrun_end_to_end_and_resume(tiny_fmnist, tmp_path):
    """D9: the resume happens after DST has thinned the ensembles' blocks below half (a layout
    re-decided from that mask would have none, and DDP's reducer would see parameters without
    gradients): the resumed 2-process run equals the uninterrupted one."""
    args = ("--epochs", "6", "--dst", "hebbian:hebbian", "--dst-interval", "1", "--dst-fraction", "0.5")
    full = _torchrun(tiny_fmnist, tmp_path / "full", *args)
    out, _ = full.communicate(timeout=300)
    assert full.returncode == 0, out
    assert out.count("test accuracy") == 1  # rank 0 reports
    env = json.loads((tmp_path / "full" / "env.json").read_text())
    assert env["processes"] == 2

    cut = _torchrun(tiny_fmnist, tmp_path / "cut", *args)
    deadline = time.monotonic() + 300
    while not (tmp_path / "cut" / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(cut.pid, signal.SIGKILL)
    cut.wait()
    assert not (tmp_path / "cut" / "summary.json").exists()  # killed mid-run
    state = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["model"]
    for name, mask in masks_from_state(state).items():  # the premise: blocks below half full
        ids = [state[f"{name}.packed.{k}"] for k in ("out_groups", "in_groups")]
        assert not blocks_pay(mask, *(i[torch.argsort(i, stable=True)] for i in ids))
    resumed = _torchrun(tiny_fmnist, tmp_path / "cut", *args, "--resume")
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    strip = lambda p: [{k: v for k, v in json.loads(l).items() if k != "epoch_time"}
                       for l in (p / "metrics.jsonl").read_text().splitlines()]
    assert strip(tmp_path / "full") == strip(tmp_path / "cut")
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(v, b[k]) for k, v in a.items())
