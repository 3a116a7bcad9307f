#!/usr/bin/env bash
# Rebuild every committed report from the run directories under results/ (no training): each
# suite's closing report (g2g sweep with a zero time limit starts no cell and reports), then the
# study's RESULTS.md (studies/g2gnet_paper). Suites without finished runs are skipped.
# PYTHON picks the interpreter (default .venv/bin/python); both steps run this checkout's code.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
for suite in suites/*.toml; do
  out=$(sed -n 's/^out = "\(.*\)"/\1/p' "$suite")
  # a suite's own runs, not only those it includes (e.g. Table I's dense), make its report
  if ! find "$out" -name summary.json -print -quit 2>/dev/null | grep -q .; then
    echo "skipped $suite (no finished runs in $out)"; continue
  fi
  "$PYTHON" -m g2gnet sweep "$suite" --time-limit 0 >/dev/null 2>&1 || echo "failed: the report of $suite"
done
"$PYTHON" -m studies.g2gnet_paper results RESULTS.md
