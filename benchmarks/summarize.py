"""Median over repeated `g2g bench` runs: python benchmarks/summarize.py RUN.json [RUN.json ...]

Reads `g2g bench --json` files (and `--epoch-json` epoch-speed files). Every cell is the median
over the runs of each run's speed-up (dense time / G2G time; in a run, the speed-up of its median
repeat, see g2gnet.bench.STATISTIC), with the min-max over the runs in parentheses. Tables: the
layer training rows per (width, tile), the inference rows per batch size, the whole-model rows,
and the epochs per configuration. Files of older versions (no inference rows, epochs as
per-model medians) are read too.
"""

import json
import statistics
import sys
from collections import defaultdict

TRAIN = {"forward": "forward", "forward_backward": "forward + backward", "step": "Adam step"}


def cell(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def old_epoch_ratios(epochs: dict) -> dict[str, float]:
    """A run of g2g bench before the epoch-speed document: per-model median seconds."""
    med = epochs.get("median_seconds", {})
    return {name: med["dense"] / secs for name, secs in med.items() if name != "dense" and "dense" in med}


def read(paths: list[str]):
    training = defaultdict(lambda: defaultdict(list))  # (what, threads) -> mode -> ratios
    inference = defaultdict(lambda: defaultdict(list))  # (what, threads) -> batch -> ratios
    epochs = defaultdict(list)  # (dataset, label) -> ratios
    for path in paths:
        run = json.load(open(path))
        if run.get("kind") == "epoch-speed":
            run = {"epochs": run}
        threads = run.get("machine", {}).get("threads", "?")
        rows = [(f"layer {r['width']} tile {r['inter_tile']}", r) for r in run.get("layers", [])]
        rows += [(f"{r['model']} {r['shape']} tile {r['inter_tile']}", r) for r in run.get("models", [])]
        for what, r in rows:
            for mode, m in r["modes"].items():
                training[(what, threads)][mode].append(m["ratio_median_of_pairs"])
            for m in r.get("inference", []):
                inference[(what, threads)][m["batch"]].append(m["ratio"])
        ep = run.get("epochs") or {}
        if "rows" in ep:
            for row in ep["rows"]:
                epochs[(ep["dataset"], row["label"])].append(row["ratio_median"])
        else:
            for name, ratio in old_epoch_ratios(ep).items():
                epochs[(ep.get("dataset", "?"), name)].append(ratio)
    return training, inference, epochs


def main(paths: list[str]) -> None:
    training, inference, epochs = read(paths)
    print("Speed-up over dense: median over runs of each run's median-repeat speed-up (min-max over runs).\n")
    if training:
        print("| layer or model | threads | " + " | ".join(TRAIN.values()) + " | runs |")
        print("|---|---|" + "---|" * (len(TRAIN) + 1))
        for (what, threads), modes in training.items():
            cells = [cell(modes[m]) if modes.get(m) else "" for m in TRAIN]
            print(f"| {what} | {threads} | " + " | ".join(cells) + f" | {max(map(len, modes.values()))} |")
    if inference:
        batches = sorted({b for per in inference.values() for b in per})
        print("\nInference (eval() under torch.inference_mode()):\n")
        print("| layer or model | threads | " + " | ".join(f"batch {b}" for b in batches) + " | runs |")
        print("|---|---|" + "---|" * (len(batches) + 1))
        for (what, threads), per in inference.items():
            cells = [cell(per[b]) if per.get(b) else "" for b in batches]
            print(f"| {what} | {threads} | " + " | ".join(cells) + f" | {max(map(len, per.values()))} |")
    for (dataset, label), ratios in epochs.items():
        print(f"epoch {dataset} {label}: speed-up vs dense {cell(ratios)} over {len(ratios)} runs")


if __name__ == "__main__":
    main(sys.argv[1:])
