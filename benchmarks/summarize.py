"""Median over repeated `g2g bench --json` runs: python benchmarks/summarize.py RUN.json [RUN.json ...]

Prints one Markdown row per (width, tile): the median over runs of each mode's median-of-pairs
speed-up (nn.Linear time / SparseLinear time), with the min-max over runs, and the epoch ratios.
"""

import json
import statistics
import sys
from collections import defaultdict

rows: dict[tuple[int, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
epochs: dict[str, list[float]] = defaultdict(list)
for path in sys.argv[1:]:
    run = json.load(open(path))
    for layer in run["layers"]:
        for mode, m in layer["modes"].items():
            rows[(layer["width"], layer["inter_tile"])][mode].append(m["ratio_median_of_pairs"])
    for name, secs in (run.get("epochs") or {}).get("median_seconds", {}).items():
        epochs[name].append(secs)

print("| width | tile | forward | forward + backward | Adam step | runs |")
print("|---|---|---|---|---|---|")
for (width, tile), modes in sorted(rows.items()):
    cells = [f"{statistics.median(v):.2f}x ({min(v):.2f}-{max(v):.2f})" for v in modes.values()]
    print(f"| {width} | {tile} | " + " | ".join(cells) + f" | {len(next(iter(modes.values())))} |")
if epochs:
    base = epochs.get("dense")
    for name, secs in epochs.items():
        ratios = [b / s for b, s in zip(base, secs)] if base else []
        print(f"epoch {name}: median {statistics.median(secs):.2f} s over {len(secs)} runs"
              + (f", speed-up vs dense median {statistics.median(ratios):.2f}x "
                 f"({min(ratios):.2f}-{max(ratios):.2f})" if ratios else ""))
