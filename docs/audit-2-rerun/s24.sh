source /tmp/audit/lib.sh; mkdir -p k && cd k
A="--grid seed=0,1 --set model=dense --set hidden=256,256 --set epochs=2 --threads 1 --out two"
$G sweep $A --no-report > twoA.log 2>&1 &
PA=$!; sleep 0.3
$G sweep $A --no-report > twoB.log 2>&1 &
PB=$!; wait $PA; echo "[A rc $?]"; wait $PB; echo "[B rc $?]"
echo "--- A:"; cat twoA.log; echo "--- B:"; cat twoB.log
for r in two/run-s0 two/run-s1; do $P -c "import json;print('$r', 'epochs',[json.loads(l)['epoch'] for l in open('$r/metrics.jsonl')], 'resumes',[x['from_epoch'] for x in json.load(open('$r/env.json'))['resumes']])"; done
echo "=== repeat 1 s apart with the closing report on (two2)"
A="--grid seed=0,1 --set model=dense --set hidden=256,256 --set epochs=2 --threads 1 --out two2"
$G sweep $A > two2A.log 2>&1 &
PA=$!; sleep 1
$G sweep $A > two2B.log 2>&1 &
PB=$!; wait $PA; echo "[A rc $?]"; wait $PB; echo "[B rc $?]"
echo "--- A:"; cat two2A.log; echo "--- B:"; cat two2B.log
for r in two2/run-s0 two2/run-s1; do $P -c "import json;print('$r', 'epochs',[json.loads(l)['epoch'] for l in open('$r/metrics.jsonl')], 'resumes',[x['from_epoch'] for x in json.load(open('$r/env.json'))['resumes']])"; done
