source /tmp/audit/lib.sh; cd /work/wt-audit; O=/tmp/audit/d
T="/work/main/.venv/bin/torchrun --nproc_per_node 2 -m g2gnet"
A="--hidden 512,512,512 --epochs 3 --threads 1 --dst magnitude:gradient --dst-interval 50"
rm -rf $O/d9
echo "=== D9: A='$A'; torchrun killed (agent and both ranks, kill -9) after the epoch-1 checkpoint, resumed with torchrun --nproc_per_node 2"
$T train $A --out $O/d9 > $O/d9a.log 2>&1 & TP=$!
while [ ! -e $O/d9/checkpoint.pt ]; do sleep 0.2; done
K="$TP $(pgrep -P $TP | tr '\n' ' ')"; kill -9 $K; wait $TP 2>/dev/null; sleep 1
echo "killed pids $K after $(wc -l < $O/d9/metrics.jsonl) epoch(s); still alive: $(ps -o pid= -p $(echo $K | tr ' ' ',') | wc -l)"
echo "\$ torchrun --nproc_per_node 2 -m g2gnet train \$A --out d9 --resume"
$T train $A --out $O/d9 --resume > $O/d9b.log 2>&1; echo "torchrun --resume rc=$?"; grep "test accuracy\|g2g: error\|Error\|reduction" $O/d9b.log | head -5
$P /tmp/audit/cmpfull.py $O/d9 $O/d9ref
$P -c "import json;e=json.load(open('$O/d9/env.json'));print('resumes',[(r['from_epoch'],r['processes']) for r in e['resumes']])"
$P - $O/d9 <<'PY'
import torch, sys, json
recs = [json.loads(l) for l in open(f"{sys.argv[1]}/metrics.jsonl")]
print("intra_fraction at the epoch-1 checkpoint:", {k: round(v["intra_fraction"], 3) for k, v in recs[0]["dst"][-1]["layers"].items()})
PY
