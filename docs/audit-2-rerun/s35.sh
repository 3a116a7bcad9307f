source /tmp/audit/lib.sh; mkdir -p k && cd k
D="--hidden 256,256,256 --epochs 4 --threads 1 --dst magnitude:hebbian --dst-interval 100 --dst-fraction 0.2"
A="--grid seed=0,1 --set hidden=256,256,256 --set epochs=4 --set dst=magnitude:hebbian --set dst_interval=100 --set dst_fraction=0.2 --workers 2 --threads 1 --out dk --no-report"
done_epochs() { echo $(( $(cat dk/run-s0/metrics.jsonl 2>/dev/null | wc -l) + $(cat dk/run-s1/metrics.jsonl 2>/dev/null | wc -l) )); }
for target in 0 1 2 3 4 5 6; do
  $G sweep $A > dk$target.log 2>&1 &
  SP=$!; T0=$SECONDS
  if [ $target = 0 ]; then sleep $((6 + RANDOM % 7)); else while [ $(done_epochs) -lt $target ] && kill -0 $SP 2>/dev/null; do sleep 0.5; done; sleep $((RANDOM % 6)); fi
  kill -9 $SP 2>/dev/null; wait $SP 2>/dev/null
  sleep 1; echo "kill after $((SECONDS-T0))s (target: $target epochs checkpointed): run-s0 epochs $(cat dk/run-s0/metrics.jsonl 2>/dev/null | wc -l), run-s1 $(cat dk/run-s1/metrics.jsonl 2>/dev/null | wc -l); workers left: $(pgrep -f 'out dk/run-' | wc -l)"
done
$G sweep $A; echo "[final sweep rc $?]"
for s in 0 1; do
  $P -c "import json;print('run-s$s', 'epochs',[json.loads(l)['epoch'] for l in open('dk/run-s$s/metrics.jsonl')], 'resumes from_epoch',[x['from_epoch'] for x in json.load(open('dk/run-s$s/env.json'))['resumes']])"
done
echo "--- uninterrupted references (g2g train)"
$G train $D --seed 0 --out dkref-s0 > dkref0.log 2>&1 & $G train $D --seed 1 --out dkref-s1 > dkref1.log 2>&1; wait; tail -n1 dkref0.log dkref1.log
for s in 0 1; do echo "== seed $s: sweep (7 kills) vs g2g train"; $P /tmp/audit/cmpfull.py dk/run-s$s dkref-s$s; done
