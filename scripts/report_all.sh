#!/usr/bin/env bash
# Rebuild every committed report from the run directories under results/ (no training).
set -euo pipefail
cd "$(dirname "$0")/.."
g2g="${G2G_REPORT:-.venv/bin/g2g} report"
t1=results/fmnist/table1
$g2g $t1 --out $t1 --by model
if [ -d results/fmnist/dst ]; then
  $g2g results/fmnist/dst $t1/g2g-mixer-s* $t1/er-s* --out results/fmnist/dst --by model,dst
fi
if [ -d results/fmnist/tiles ]; then
  $g2g results/fmnist/tiles $t1/g2g-mixer-s* --out results/fmnist/tiles --by model,inter_tile
fi
