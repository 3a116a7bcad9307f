#!/usr/bin/env bash
# Rebuild every committed report from the run directories under results/ (no training): each
# suite's closing report (g2g sweep with nothing left to run ends with it), then RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
for suite in suites/*.toml; do
  .venv/bin/g2g sweep "$suite" --time-limit 0 >/dev/null
done
