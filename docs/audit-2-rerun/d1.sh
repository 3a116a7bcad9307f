source /tmp/audit/lib.sh; mkdir -p /tmp/audit/d && cd /tmp/audit/d
T="/work/main/.venv/bin/torchrun --nproc_per_node 2 -m g2gnet"
cd /work/wt-audit   # torchrun cases are run from the worktree
O=/tmp/audit/d
echo "=== D1"; rm -rf $O/ddp2 $O/one2
echo "\$ torchrun --nproc_per_node 2 -m g2gnet train --hidden 64,64,64 --epochs 2 --threads 1 --batch-size 255 --out ddp2"
$T train --hidden 64,64,64 --epochs 2 --threads 1 --batch-size 255 --out $O/ddp2 2>&1 | tail -n 2; echo "rc=${PIPESTATUS[0]}"
$G train --hidden 64,64,64 --epochs 2 --threads 1 --batch-size 255 --out $O/one2 2>&1 | tail -n 1
$P /tmp/audit/cmp.py $O/ddp2 $O/one2; $P -c "import json;print('steps', [json.loads(l)['step'] for l in open('$O/ddp2/metrics.jsonl')], [json.loads(l)['step'] for l in open('$O/one2/metrics.jsonl')])"
echo "=== D2"; rm -rf $O/ddp180 $O/one180
echo "\$ torchrun ... train --hidden 64,64,64 --epochs 1 --threads 1 --batch-size 180 --val 59 --out ddp180"
$T train --hidden 64,64,64 --epochs 1 --threads 1 --batch-size 180 --val 59 --out $O/ddp180 2>&1 | tail -n 1; echo "rc=${PIPESTATUS[0]}"
$G train --hidden 64,64,64 --epochs 1 --threads 1 --batch-size 180 --val 59 --out $O/one180 2>&1 | tail -n 1
$P /tmp/audit/cmp.py $O/ddp180 $O/one180
echo "=== D3"; rm -rf $O/ddpb1
echo "\$ torchrun ... train --hidden 64,64,64 --epochs 1 --threads 1 --batch-size 1 --out ddpb1"
$T train --hidden 64,64,64 --epochs 1 --threads 1 --batch-size 1 --out $O/ddpb1 2>&1 | tail -n 12; echo "rc=${PIPESTATUS[0]}"; ls $O/ddpb1 2>&1
