source /tmp/audit/lib.sh; cd /work/wt-audit; O=/tmp/audit/d
T="/work/main/.venv/bin/torchrun --nproc_per_node 2 -m g2gnet"
for dst in magnitude:gradient hebbian:hebbian magnitude:hebbian random:random; do
  n=$(echo $dst | tr ':' '_'); rm -rf $O/d6_2_$n $O/d6_1_$n
  A="--hidden 64,64,64 --epochs 1 --threads 1 --dst $dst --dst-interval 20 --dst-fraction 0.2"
  $T train $A --out $O/d6_2_$n > $O/d6_2_$n.log 2>&1; r2=$?
  $G train $A --out $O/d6_1_$n > $O/d6_1_$n.log 2>&1; r1=$?
  echo "== --dst $dst: torchrun rc=$r2, 1-process rc=$r1"
  $P - $O/d6_2_$n $O/d6_1_$n <<'PY'
import torch, json, sys
a, b = (torch.load(f"{d}/checkpoint.pt", weights_only=True)["model"] for d in sys.argv[1:])
bits = [k for k in a if k.endswith("mask_bits")]
print("  final mask_bits bytes differing per layer:", [int((a[k] != b[k]).sum()) for k in bits])
m = [[json.loads(l) for l in open(f"{d}/metrics.jsonl")][-1] for d in sys.argv[1:]]
print("  DST updates:", len(m[0].get("dst", [])), len(m[1].get("dst", [])), "| test_acc", m[0]["test_acc"], m[1]["test_acc"], "| train_loss", m[0]["train_loss"], m[1]["train_loss"])
PY
done
