#!/usr/bin/env bash
# One session on a lent GPU machine (an H200 here): the CUDA tests, the GPU bench table, and as
# many CIFAR-10 grid cells as fit, in one command. Finished run directories come back in
# $OUT/results.tgz, refreshed every minute, so a command stopped at its time limit loses only the
# cells in flight. Run from the repository root there:
#   bash scripts/gpu_session.sh PACK_DIR... -- SECONDS_AVAILABLE SUITE...
# PACK_DIRs hold unpack.py and the CIFAR-10 pack files (../shared/datasets), in any split.
set -uo pipefail
start=$(date +%s)
packs=(); while [ "$1" != "--" ]; do packs+=("$1"); shift; done; shift
budget=$1; shift; suites=("$@")
out=${OUT:-/tmp/out}; mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 G2G_DATA=/tmp/g2gdata
left() { echo $(( budget - ($(date +%s) - start) )); }

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"
  nproc; } > "$out/machine.txt" 2>&1
nvidia-cuda-mps-control -d >> "$out/machine.txt" 2>&1 && echo "MPS daemon started" >> "$out/machine.txt"

pack=/tmp/pack; mkdir -p $pack/cifar10
for d in "${packs[@]}"; do
  cp "$d"/unpack.py $pack/ 2>/dev/null
  for f in "$d"/*; do [ "$(basename "$f")" != unpack.py ] && ln -sf "$PWD/$f" $pack/cifar10/; done
done
python3 $pack/unpack.py "$G2G_DATA" --dataset cifar10 > "$out/unpack.txt" 2>&1 || { echo "unpack failed"; cat "$out/unpack.txt"; }

[ -z "${SKIP_CHECKS:-}" ] && python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_kernels.py tests/test_layers.py \
  > "$out/cuda-tests.txt" 2>&1
tail -3 "$out/cuda-tests.txt"

mkdir -p /tmp/bench
[ -z "${SKIP_CHECKS:-}" ] && for args in "--path auto" "--path fast" "--path reference" "--dtype bfloat16 --path auto" "--dtype bfloat16 --path fast"; do
  tag=$(echo "$args" | tr -d '-' | tr ' ' '_')
  python3 -m g2gnet bench --device cuda --widths 1024,2048,4096 --repeats 30 $args \
    --json /tmp/bench/cuda-$tag.json > /tmp/bench/cuda-$tag.txt 2>&1
done
python3 -m g2gnet bench --device cuda --widths 1024 --repeats 5 --epoch dense,g2g-mixer --dataset cifar10 \
  --json /tmp/bench/cuda-epoch-cifar10.json > /tmp/bench/cuda-epoch-cifar10.txt 2>&1
tar czf "$out/bench.tgz" -C /tmp bench
cat /tmp/bench/cuda-path_auto.txt | head -12

pack_results() {  # finished run directories only (summary.json), no checkpoints
  find results -name summary.json -newer "$out/machine.txt" -printf '%h\n' > /tmp/done.txt
  tar czf "$out/results.tmp.tgz" --exclude='*.pt' -T /tmp/done.txt 2>/dev/null && mv "$out/results.tmp.tgz" "$out/results.tgz"
}
( while sleep 60; do pack_results; done ) &
packer=$!
limit=$(( $(left) - ${CELL_SECONDS:-150} ))
echo "sweep: $(left) s left, no cell starts after $limit s"
python3 -m g2gnet sweep "${suites[@]}" --device cuda --threads 1 --workers "${WORKERS:-14}" --no-report \
  --time-limit "$limit" > "$out/sweep.log" 2>&1
kill $packer; pack_results
grep -c " done in " "$out/sweep.log"; tail -3 "$out/sweep.log"
