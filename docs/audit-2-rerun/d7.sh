source /tmp/audit/lib.sh; cd /work/wt-audit; O=/tmp/audit/d
T="/work/main/.venv/bin/torchrun --nproc_per_node 2 -m g2gnet"
A="--hidden 512,512,512 --epochs 3 --threads 1 --dst magnitude:gradient --dst-interval 50"
rm -rf $O/d7ref $O/d7 $O/d9 $O/d9ref
echo "A='$A'"
echo "=== uninterrupted references: g2g train \$A --out d7ref ; torchrun ... train \$A --out d9ref"
$G train $A --out $O/d7ref 2>&1 | tail -n 1
$T train $A --out $O/d9ref 2>&1 | grep "test accuracy"
echo "=== D7: 1 process killed after epoch 1, resumed with torchrun --nproc_per_node 2"
$G train $A --out $O/d7 > $O/d7a.log 2>&1 & TP=$!
while [ ! -e $O/d7/checkpoint.pt ]; do sleep 0.2; done; kill -9 $TP; wait $TP 2>/dev/null; echo "killed after $(wc -l < $O/d7/metrics.jsonl) epoch(s)"
$T train $A --out $O/d7 --resume > $O/d7b.log 2>&1; echo "torchrun --resume rc=$?"; grep "test accuracy\|g2g: error\|Error" $O/d7b.log | head -5
$P /tmp/audit/cmp.py $O/d7 $O/d7ref | tail -n 2
echo "=== D9: torchrun killed (whole group) after the epoch-1 checkpoint, resumed with torchrun --nproc_per_node 2"
setsid $T train $A --out $O/d9 > $O/d9a.log 2>&1 & TP=$!
while [ ! -e $O/d9/checkpoint.pt ]; do sleep 0.2; done; kill -9 -- -$TP; wait $TP 2>/dev/null; sleep 1; echo "killed group after $(wc -l < $O/d9/metrics.jsonl) epoch(s)"
$T train $A --out $O/d9 --resume > $O/d9b.log 2>&1; echo "torchrun --resume rc=$?"; grep "test accuracy\|g2g: error\|Error\|reduction" $O/d9b.log | head -5
$P /tmp/audit/cmpfull.py $O/d9 $O/d9ref
$P - $O/d9 <<'PY'
import torch, sys
ck = torch.load(f"{sys.argv[1]}/checkpoint.pt", weights_only=True)
print("final layouts blocks:", [bool(v) for k, v in ck["model"].items() if k.endswith("packed.blocks")])
PY
