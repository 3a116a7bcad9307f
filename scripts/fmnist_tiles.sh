#!/usr/bin/env bash
# Tiled inter-group links (issue 4): g2g-mixer with 16x16 and 32x32 tiles, seeds 0-2, 20 epochs,
# beside the element-wise g2g-mixer of Table I (results/fmnist/table1).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/sweep.sh results/fmnist/tiles "${SEEDS:-0 1 2}" \
  "g2g-mixer-t16=--dataset fashion-mnist --model g2g-mixer --inter-tile 16" \
  "g2g-mixer-t32=--dataset fashion-mnist --model g2g-mixer --inter-tile 32"
.venv/bin/g2g report results/fmnist/tiles results/fmnist/table1/g2g-mixer-s* --out results/fmnist/tiles \
  --by model,inter_tile
