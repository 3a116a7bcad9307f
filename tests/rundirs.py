"""Hand-made run directories for the report and study tests: the files ``g2g train`` writes, with
the numbers a test chooses (no training)."""

from __future__ import annotations

import json
from pathlib import Path

from g2gnet.config import Config


def write_run(path: Path, acc: float, seed: int, *, dataset: str = "cifar10", epochs: int = 30,
              curve: list[float] | None = None, version: str | None = None, resumed: list[str] = (),
              train: dict | None = None, dst: dict | None = None, **model) -> Path:
    """A finished run of ``model`` (ModelConfig fields) with final test accuracy ``acc`` (%).

    ``curve``: per-epoch test accuracies (%) for metrics.jsonl; ``version``: env.json's
    source_sha256, ``resumed``: one resume entry per code version given."""
    path.mkdir(parents=True)
    config = Config().replace(data={"dataset": dataset, "augment": dataset == "cifar10"}, model=model,
                              train={"seed": seed, "epochs": epochs, **(train or {})}, dst=dst or {})
    (path / "config.json").write_text(json.dumps(config.to_dict()))
    sparse = model.get("name", "g2g-mixer") not in ("dense", "dense-matched")
    (path / "summary.json").write_text(json.dumps({
        "test_acc": acc / 100, "active_params": 250 if sparse else 1000, "density": 0.25 if sparse else None,
        "seconds_per_epoch": 1.0, "wall_time": 30.0, "flops_per_sample": 500 if sparse else 2000}))
    if curve is not None:
        (path / "metrics.jsonl").write_text("".join(
            json.dumps({"epoch": e + 1, "step": 10 * (e + 1), "lr": 1e-3, "train_loss": 1.0, "train_acc": a / 100,
                        "test_loss": 1.0, "test_acc": a / 100, "epoch_time": 1.0}) + "\n" for e, a in enumerate(curve)))
    if version is not None:
        env = {"device": "cpu", "source_sha256": version, "git_sha": "0" * 40, "git_dirty": False,
               "resumes": [{"source_sha256": v, "from_epoch": 1} for v in resumed]}
        (path / "env.json").write_text(json.dumps(env))
    return path
