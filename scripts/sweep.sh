#!/usr/bin/env bash
# Run a grid of `g2g train` runs, one after another, each into OUT/<name>-s<seed>.
# Restartable: a finished run (summary.json present) is skipped, an interrupted one resumes.
# usage: scripts/sweep.sh OUT "SEEDS" "NAME=ARGS" ["NAME=ARGS" ...]
#   e.g. scripts/sweep.sh results/fmnist/table1 "0 1 2" "dense=--model dense" "er=--model er"
set -euo pipefail
out="$1"; seeds="$2"; shift 2
read -r -a g2g <<< "${G2G:-.venv/bin/g2g train}"
for seed in $seeds; do
  for spec in "$@"; do
    name="${spec%%=*}"; args="${spec#*=}"
    dir="$out/$name-s$seed"
    if [ -f "$dir/summary.json" ]; then echo "skip $dir"; continue; fi
    resume=""; [ -f "$dir/config.json" ] && resume="--resume"
    # shellcheck disable=SC2086
    "${g2g[@]}" $args --seed "$seed" --out "$dir" $resume
  done
done
