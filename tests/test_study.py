"""The G2GNet paper study (studies/g2gnet_paper): RESULTS.md built from hand-made and tiny trained
run directories, with hand-checked verdicts."""

from __future__ import annotations

import json
from pathlib import Path

from g2gnet.cli import main
from rundirs import write_run
from studies.g2gnet_paper.results import build_results

SMALL = ["--hidden", "32,32", "--groups", "4", "--batch-size", "64", "--lr", "0.005"]


def _train(data, out, *extra):
    return main(["train", "--dataset", "fashion-mnist", "--data-dir", str(data), "--out", str(out), *SMALL, *extra])


def _write_run(path: Path, acc: float, seed: int, **model) -> None:
    write_run(path, acc, seed, **model)


def test_results_document_verdicts_by_hand(tmp_path):
    root = tmp_path / "results"
    for s, (dense, g2g) in enumerate([(50.0, 55.0), (51.0, 56.5), (52.0, 56.0)]):  # diffs 5, 5.5, 4
        _write_run(root / "cifar10" / "table1" / f"dense-s{s}", dense, s, name="dense")
        _write_run(root / "cifar10" / "table1" / f"g2g-index-s{s}", g2g, s, name="g2g-index")
    for s, (dense, g2g) in enumerate([(60.0, 58.0), (61.0, 58.5), (62.0, 60.0)]):  # diffs -2, -2.5, -2
        _write_run(root / "cifar10" / "patch" / f"dense-s{s}", dense, s, name="dense", frontend="patch")
        _write_run(root / "cifar10" / "patch" / f"g2g-mixer-s{s}", g2g, s, name="g2g-mixer", frontend="patch")
    text = build_results(root, tmp_path / "RESULTS.md")
    # mean 4.83, sample std 0.764, half-width 4.303 * 0.764 / sqrt(3) = 1.90
    assert ("| at least dense accuracy with far fewer parameters | CIFAR-10 | best grouping g2g-index 55.83 ± 0.76 "
            "(n = 3) vs dense 51.00 ± 1.00 (n = 3); +4.83 points [+2.94, +6.73], n = 3: better; 0.25x the "
            "parameters | holds |") in text
    assert "| accuracy up to +4.3% | CIFAR-10 |" in text and "+4.83 points [+2.94, +6.73], n = 3: better | reached |" in text
    # -2.17 +- 4.303 * 0.289 / sqrt(3) = 0.72
    assert ("| ... and with a conv front end (patch) | CIFAR-10 | best grouping g2g-mixer 58.83 ± 1.04 (n = 3) vs "
            "dense 61.00 ± 1.00 (n = 3): -2.17 points [-2.88, -1.45], n = 3: worse | does not hold |") in text
    assert "0.25x the FLOPs per sample of dense" in text
    assert "6 runs (6 on CPU (30 s per run, 30-30)" in text


def test_results_document_with_claims(tiny_fmnist, tmp_path, capsys):
    root = tmp_path / "results"
    for seed in (0, 1):
        for model in ("dense", "dense-matched", "g2g-mixer", "g2g-index"):
            assert _train(tiny_fmnist, root / "fmnist" / "table1" / f"{model}-s{seed}", "--model", model,
                          "--epochs", "1", "--seed", str(seed)) == 0
        for rule in ("magnitude:hebbian", "magnitude:random"):
            assert _train(tiny_fmnist, root / "fmnist" / "dst" / f"g2g-mixer-{rule}-s{seed}", "--model",
                          "g2g-mixer", "--epochs", "1", "--seed", str(seed), "--dst", rule, "--dst-interval",
                          "4") == 0
    out = tmp_path / "RESULTS.md"
    text = build_results(root, out)
    assert out.read_text() == text
    assert "## Fashion-MNIST" in text and "### Table I" in text and "### Dynamic sparse training" in text
    claims = [l for l in text.splitlines() if l.startswith("| ") and "Fashion-MNIST" in l]
    assert any(l.startswith("| up to 75% sparsity |") for l in claims)
    assert any("magnitude:hebbian − static mask" in l for l in claims)
    assert "| all claims | CIFAR-100 | not measurable" in text
    # every number in a claim comes from the runs: the dense accuracy shown is theirs
    accs = [100 * json.loads((root / "fmnist" / "table1" / f"dense-s{s}" / "summary.json").read_text())["test_acc"]
            for s in (0, 1)]
    assert f"dense {sum(accs) / 2:.2f}" in text
    walls = sorted(json.loads((root / "fmnist" / "table1" / f"{m}-s{s}" / "summary.json").read_text())["wall_time"]
                   for m in ("dense", "dense-matched", "g2g-mixer", "g2g-index") for s in (0, 1))
    assert f"8 runs (8 on CPU ({(walls[3] + walls[4]) / 2:.0f} s per run, {walls[0]:.0f}-{walls[-1]:.0f})" in text
