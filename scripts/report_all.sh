#!/usr/bin/env bash
# Rebuild every committed report from the run directories under results/ (no training): each
# suite's closing report (g2g sweep with a zero time limit starts no cell and reports), then the
# study's RESULTS.md (studies/g2gnet_paper). Suites without finished runs are skipped.
# PYTHON picks the interpreter (default .venv/bin/python); both steps run this checkout's code.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
for suite in suites/*.toml; do
  "$PYTHON" -m g2gnet sweep "$suite" --time-limit 0 >/dev/null 2>&1 || echo "skipped $suite (no finished runs)"
done
"$PYTHON" -m studies.g2gnet_paper results RESULTS.md
