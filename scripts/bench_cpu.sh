#!/usr/bin/env bash
# CPU timings of the README's Performance section, each repeated RUNS times (a shared machine is
# noisy: the summary is the median over runs of each run's median-repeat speed-up, min-max over
# runs): the layer table (training rows at batch 256 and inference rows at batch 1, 8, 64, 256;
# element-wise mask, 16x16 and 32x32 tiles), the whole Fashion-MNIST g2g-mixer against the dense
# MLP (training and inference rows), the inference rows on one thread, and Fashion-MNIST and
# CIFAR-10 training epochs of g2g-mixer against dense; then the masked reference path, the
# per-part costs at 2048, how fast dense could be on this CPU (benchmarks/dense_backends.py: nn.Linear's
# BLAS against oneDNN and torch.compile), and the shared checks (layer speed, inference, memory, compile/autocast).
# Run on an otherwise idle machine, with the CIFAR-10 files under $G2G_DATA. OUT names the folder the
# files go to (default results/bench/cpu: the table of the README; another CPU keeps its own folder).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-results/bench/cpu}"; mkdir -p "$out"
rev="$(git rev-parse --short HEAD)$([ -z "$(git status --porcelain -- g2gnet)" ] || echo ' + uncommitted changes to g2gnet/')"
g2g=.venv/bin/g2g
for r in $(seq 1 "${RUNS:-3}"); do
  $g2g bench --widths 1024,2048,4096 --threads 2 --epoch g2g-mixer \
    --json "$out/elementwise-r$r.json" > "$out/elementwise-r$r.txt"
  $g2g bench --tables none --threads 2 --epoch g2g-mixer --dataset cifar10 \
    --json "$out/cifar10-epoch-r$r.json" > "$out/cifar10-epoch-r$r.txt"
  for t in 16 32; do
    $g2g bench --tables layer --widths 1024,2048,4096 --threads 2 --inter-tile "$t" \
      --json "$out/tile$t-r$r.json" > "$out/tile$t-r$r.txt"
  done
  $g2g bench --modes inference --widths 1024,2048,4096 --threads 1 \
    --json "$out/inference-1thread-r$r.json" > "$out/inference-1thread-r$r.txt"
done
$g2g bench --tables layer --widths 1024,2048 --threads 2 --path reference \
  --json "$out/reference-path.json" > "$out/reference-path.txt"
# The parts files keep every bench's run (appended under a header naming the code the bench began on).
for t in 1 32; do
  f="$out/parts-2048$([ "$t" = 32 ] && echo -tile32).txt"
  if parts="$(.venv/bin/python benchmarks/parts.py 2048 "$t")"; then
    printf '\n# scripts/bench_cpu.sh on %s, %s\n%s\n' "$rev" "$(date -u +%F)" "$parts" >> "$f"
  else
    echo "benchmarks/parts.py 2048 $t failed" >&2
  fi
done
for r in $(seq 1 "${RUNS:-3}"); do
  .venv/bin/python benchmarks/dense_backends.py > "$out/dense-backends-r$r.txt" || echo "benchmarks/dense_backends.py failed" >&2
done
for check in perf-layer perf-tiles perf-infer perf-memory compile-amp; do
  [ -f ../shared/checks/$check.sh ] && bash ../shared/checks/$check.sh > "$out/check-$check.txt" 2>&1
done
.venv/bin/python benchmarks/summarize.py "$out"/elementwise-r*.json "$out"/tile*-r*.json \
  "$out"/inference-1thread-r*.json "$out"/cifar10-epoch-r*.json > "$out/summary.md"
cat "$out/summary.md"
