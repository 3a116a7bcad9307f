#!/usr/bin/env bash
# The reproduction suites of SPEC §6 for one dataset, as restartable sweeps into results/DATASET/.
# usage: scripts/suite.sh DATASET [table1|pinter|dst|all]   (extra `g2g train` flags via $EXTRA,
#        e.g. EXTRA="--device cuda --frontend patch"; seeds via $SEEDS, default "0 1 2")
set -euo pipefail
cd "$(dirname "$0")/.."
ds="$1"; part="${2:-all}"; out="results/$ds"; seeds="${SEEDS:-0 1 2}"; extra="${EXTRA:-}"
run() { scripts/sweep.sh "$@"; }
if [[ $part == table1 || $part == all ]]; then
  specs=()
  for m in dense dense-matched er g2g-index g2g-random g2g-mixer; do specs+=("$m=--dataset $ds --model $m $extra"); done
  run "$out/table1" "$seeds" "${specs[@]}"
fi
if [[ $part == pinter || $part == all ]]; then
  specs=()
  for m in g2g-index g2g-random g2g-mixer; do
    for p in 0 0.05 0.10 0.15 0.20 0.25; do specs+=("$m-p$p=--dataset $ds --model $m --p-inter $p $extra"); done
  done
  run "$out/pinter" "$seeds" "${specs[@]}"
fi
if [[ $part == dst || $part == all ]]; then
  specs=()
  for start in g2g-mixer er; do
    for prune in magnitude random hebbian; do
      for grow in hebbian random gradient; do
        specs+=("$start-$prune-$grow=--dataset $ds --model $start --dst $prune:$grow $extra")
      done
    done
  done
  run "$out/dst-ablation" "$seeds" "${specs[@]}"
fi
