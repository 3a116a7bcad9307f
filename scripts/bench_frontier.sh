#!/usr/bin/env bash
# The measured epoch speed of every configuration of the accuracy-speed frontier (issue 17):
# training epochs against dense at the same widths, in one process, interleaved (g2g bench
# --epoch-config; configurations that differ only in the seed are timed once, 3 repeats).
#   cifar10:       suites/cifar10-frontier.toml, suites/cifar10-long.toml, and the cells the
#                  frontier compares with: the p' sweep's p' = 0.05 index and mixer, Table I's
#   fashion-mnist: suites/fmnist-frontier.toml and the same comparison cells
# -> results/bench/frontier/<dataset>.json (epoch-speed documents: the RESULTS.md frontier table
# reads them) and .txt (the table). Run on an otherwise idle machine (pause the sweeps), with the
# CIFAR-10 files under $G2G_DATA. Settings: THREADS (default 2), REPEATS (default: g2g bench's
# --epoch-repeats), STEPS (time only the first STEPS steps of each epoch: a quick look), OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-results/bench/frontier}; mkdir -p "$out"
g2g=${G2G:-.venv/bin/g2g}
opts=(--tables none --threads "${THREADS:-2}")
[ -n "${REPEATS:-}" ] && opts+=(--epoch-repeats "$REPEATS")
[ -n "${STEPS:-}" ] && opts+=(--epoch-steps "$STEPS")
for ds in cifar10 fmnist; do
  name=$([ "$ds" = fmnist ] && echo fashion-mnist || echo "$ds")
  suites=(suites/$ds-frontier.toml); [ "$ds" = cifar10 ] && suites+=(suites/cifar10-long.toml)
  $g2g bench "${opts[@]}" --epoch-config "${suites[@]}" results/$ds/pinter/g2g-{index,mixer}-p0.05-s0 \
    results/$ds/table1/g2g-{index,mixer}-s0 --epoch-json "$out/$name.json" > "$out/$name.txt"
  cat "$out/$name.txt"
done
