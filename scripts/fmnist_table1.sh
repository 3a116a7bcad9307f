#!/usr/bin/env bash
# Table I on Fashion-MNIST (SPEC §6): six models, seeds 0-2, paper defaults (20 epochs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/sweep.sh results/fmnist/table1 "${SEEDS:-0 1 2}" \
  "dense=--dataset fashion-mnist --model dense" \
  "dense-matched=--dataset fashion-mnist --model dense-matched" \
  "er=--dataset fashion-mnist --model er" \
  "g2g-index=--dataset fashion-mnist --model g2g-index" \
  "g2g-random=--dataset fashion-mnist --model g2g-random" \
  "g2g-mixer=--dataset fashion-mnist --model g2g-mixer"
.venv/bin/g2g report results/fmnist/table1 --out results/fmnist/table1 --by model
