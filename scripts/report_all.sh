#!/usr/bin/env bash
# Rebuild every committed report from the run directories under results/ (no training): each
# suite's closing report (g2g sweep with a zero time limit starts no cell and reports), then
# RESULTS.md. Suites without finished runs are skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
for suite in suites/*.toml; do
  .venv/bin/g2g sweep "$suite" --time-limit 0 >/dev/null 2>&1 || echo "skipped $suite (no finished runs)"
done
.venv/bin/g2g report results --results RESULTS.md
