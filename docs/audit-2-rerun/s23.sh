source /tmp/audit/lib.sh; mkdir -p k && cd k
A="--grid seed=0,1 --set model=dense --set hidden=256,256,256 --set epochs=3 --threads 1 --out kw --no-report"
$G sweep $A > kw1.log 2>&1 &
SP=$!
while [ "$(cat kw/run-s0/metrics.jsonl 2>/dev/null | wc -l)" -lt 1 ]; do sleep 0.3; done
W=$(pgrep -P $SP); echo "sweep $SP; kill -9 worker $W (run-s0 in epoch 2)"; kill -9 $W
wait $SP; echo "[sweep rc $?]"; cat kw1.log
echo "--- re-run"
$G sweep $A; echo "[rerun rc $?]"
for r in kw/run-s0 kw/run-s1; do $P -c "import json;print('$r', 'epochs',[json.loads(l)['epoch'] for l in open('$r/metrics.jsonl')], 'resumes',[x['from_epoch'] for x in json.load(open('$r/env.json'))['resumes']])"; done
