#!/usr/bin/env bash
# CPU timings of issue 4 (README "Performance"): the layer table for the element-wise mask and
# for 16x16 / 32x32 tiles, plus Fashion-MNIST epochs of dense vs g2g-mixer, each repeated RUNS
# times (the machine is shared and noisy: the summary is the median over runs of each run's
# median-of-pairs speed-up), and the masked reference path once. Run on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
out=results/bench; mkdir -p "$out"
g2g=.venv/bin/g2g
for r in $(seq 1 "${RUNS:-3}"); do
  $g2g bench --widths 1024,2048,4096 --threads 2 --repeats 15 --epoch dense,g2g-mixer \
    --json "$out/cpu-2threads-elementwise-r$r.json" > "$out/cpu-2threads-elementwise-r$r.txt"
  $g2g bench --widths 1024 --threads 2 --repeats 5 --inter-tile 32 --epoch dense,g2g-mixer \
    --json "$out/cpu-2threads-tile32-epoch-r$r.json" > "$out/cpu-2threads-tile32-epoch-r$r.txt"
  for t in 16 32; do
    $g2g bench --widths 1024,2048,4096 --threads 2 --repeats 15 --inter-tile "$t" \
      --json "$out/cpu-2threads-tile$t-r$r.json" > "$out/cpu-2threads-tile$t-r$r.txt"
  done
done
G2G_FAST=0 $g2g bench --widths 1024,2048 --threads 2 --repeats 15 \
  --json "$out/cpu-2threads-reference-path.json" > "$out/cpu-2threads-reference-path.txt"
G2G_FAST=0 $g2g bench --widths 1024 --threads 2 --repeats 5 --epoch dense,g2g-mixer \
  --json "$out/cpu-2threads-reference-epoch.json" > "$out/cpu-2threads-reference-epoch.txt"
.venv/bin/python benchmarks/summarize.py "$out"/cpu-2threads-elementwise-r*.json "$out"/cpu-2threads-tile*-r*.json \
  > "$out/summary.md"
.venv/bin/python benchmarks/summarize.py "$out"/cpu-2threads-tile32-epoch-r*.json | sed 's/^epoch/tiles 32, epoch/' \
  >> "$out/summary.md"
cat "$out/summary.md"
