#!/usr/bin/env bash
# DST ablation on Fashion-MNIST (issue 3): four rewiring rules on the G2G-mixer and the ER start,
# seeds 0-2, 20 epochs, interval 1000, ζ = 0.1 constant, window 1. The static runs are Table I's.
set -euo pipefail
cd "$(dirname "$0")/.."
rules="magnitude:hebbian hebbian:hebbian magnitude:random magnitude:gradient"
specs=()
for start in ${STARTS:-g2g-mixer er}; do
  for rule in $rules; do
    specs+=("$start-${rule/:/-}=--dataset fashion-mnist --model $start --dst $rule")
  done
done
scripts/sweep.sh results/fmnist/dst "${SEEDS:-0 1 2}" "${specs[@]}"
