source /tmp/audit/lib.sh; mkdir -p k && cd k
$G train --model dense --hidden 512,512,512 --epochs 4 --seed 0 --threads 1 --out k9ref > ref.log 2>&1
$G sweep --grid seed=0,1 --set model=dense --set hidden=512,512,512 --set epochs=4 --threads 1 --out k9 --no-report > sw1.log 2>&1 &
SP=$!
while [ "$(cat k9/run-s0/metrics.jsonl 2>/dev/null | wc -l)" -lt 2 ]; do sleep 0.5; done
sleep 1
W=$(pgrep -P $SP); echo "sweep $SP worker $W; killing sweep with -9 at epoch $(($(wc -l < k9/run-s0/metrics.jsonl)+1)) of run-s0"
kill -9 $SP; sleep 2; echo "worker alive after kill: $(ps -p $W -o pid= || echo no)"
$G sweep --grid seed=0,1 --set model=dense --set hidden=512,512,512 --set epochs=4 --threads 1 --out k9 --no-report; echo "[rerun rc $?]"
$P /tmp/audit/cmp.py k9/run-s0 k9ref
$P -c "import json;e=json.load(open('k9/run-s0/env.json'));print('resumes',e['resumes'])"
