#!/usr/bin/env bash
# Accuracy of the hardware-friendly tiled variant (issue 4): g2g-mixer with inter-group links drawn
# in 16x16 tiles, seeds 0-2, Fashion-MNIST defaults. Compare with Table I's element-wise g2g-mixer.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/sweep.sh results/fmnist/tiled "${SEEDS:-0 1 2}" \
  "g2g-mixer-tile16=--dataset fashion-mnist --model g2g-mixer --inter-tile 16"
