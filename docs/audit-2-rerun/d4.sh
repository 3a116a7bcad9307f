source /tmp/audit/lib.sh; cd /work/wt-audit; O=/tmp/audit/d; rm -rf $O/ddpk $O/lockd
T="/work/main/.venv/bin/torchrun --nproc_per_node 2 -m g2gnet"
echo "=== D4: \$ torchrun --nproc_per_node 2 -m g2gnet train --model dense --hidden 512,512,512 --epochs 4 --threads 1 --out ddpk &  ; kill -9 rank 1 once epoch 2 is checkpointed"
$T train --model dense --hidden 512,512,512 --epochs 4 --threads 1 --out $O/ddpk > $O/d4.log 2>&1 &
TP=$!
while [ "$(cat $O/ddpk/metrics.jsonl 2>/dev/null | wc -l)" -lt 2 ]; do sleep 0.3; done; sleep 2
R1=""; for p in $(pgrep -P $TP); do tr '\0' '\n' < /proc/$p/environ | grep -qx RANK=1 && R1=$p; done
echo "kill -9 rank 1 (pid $R1)"; kill -9 $R1
wait $TP; echo "torchrun rc=$?"
echo "--- output (rank lines, torchrun's own lines summarised):"; grep -v "^W1206\|^E1206\|^\*\*\*\*" $O/d4.log | grep -E "g2g|rank0|Error|error|epoch" | head -20
echo "lines in output: $(wc -l < $O/d4.log); lines with Traceback: $(grep -c Traceback $O/d4.log); '[rank0]:' lines: $(grep -c '^\[rank0\]' $O/d4.log)"
ls $O/ddpk; $P -c "import torch;print('checkpoint epoch', torch.load('$O/ddpk/checkpoint.pt',weights_only=True)['epoch'])"
echo "=== D5: \$ g2g train --model dense --hidden 512,512,512 --epochs 4 --threads 1 --out ddpk --resume   (1 process)"
$G train --model dense --hidden 512,512,512 --epochs 4 --threads 1 --out $O/ddpk --resume 2>&1 | tail -n 1; echo "rc=${PIPESTATUS[0]}"
$P -c "import json;e=json.load(open('$O/ddpk/env.json'));print('epochs',[json.loads(l)['epoch'] for l in open('$O/ddpk/metrics.jsonl')],'processes',e['processes'],'resumes',[(r['from_epoch'],r['processes']) for r in e['resumes']])"
$P /tmp/audit/cmp.py $O/ddpk /tmp/audit/s/k/k9ref | tail -n 1
echo "=== D8: torchrun --resume on a run directory held by a running 1-process run"
$G train --model dense --hidden 256,256,256 --epochs 3 --threads 1 --out $O/lockd > $O/lockd1.log 2>&1 &
TP=$!; while [ ! -e $O/lockd/config.json ]; do sleep 0.2; done; sleep 1
S=$SECONDS; $T train --model dense --hidden 256,256,256 --epochs 3 --threads 1 --out $O/lockd --resume > $O/d8.log 2>&1; echo "torchrun rc=$? after $((SECONDS-S)) s"; grep "g2g: error" $O/d8.log
wait $TP; echo "first run rc=$?: $(tail -n 1 $O/lockd1.log)"; $P -c "import json;print('epochs',[json.loads(l)['epoch'] for l in open('$O/lockd/metrics.jsonl')])"
