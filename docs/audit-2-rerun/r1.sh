source /tmp/audit/lib.sh; mkdir -p /tmp/audit/r1 && cd /tmp/audit/r1; rm -rf hk hkref rr rrref
for v in "hk:--dst hebbian:hebbian --dst-interval 60 --dst-fraction 0.2" "rr:--dst random:random --dst-interval 60 --dst-fraction 0.3"; do
  n=${v%%:*}; dst=${v#*:}
  A="--hidden 256,256,256 --epochs 3 --threads 1 $dst"
  echo "=== $n: A='$A'"
  echo "\$ g2g train \$A --out ${n}ref"; $G train $A --out ${n}ref 2>&1 | tail -n 1
  $G train $A --out $n > $n.log 2>&1 &
  TP=$!; while [ ! -e $n/checkpoint.pt ]; do sleep 0.1; done; kill -9 $TP; wait $TP 2>/dev/null
  echo "killed after $(wc -l < $n/metrics.jsonl) epoch(s) checkpointed"
  $P - $n <<'PY'
import torch, sys
ck = torch.load(f"{sys.argv[1]}/checkpoint.pt", weights_only=True)
print("checkpoint layouts:", {k.rsplit('.',2)[0]: bool(v) for k, v in ck["model"].items() if k.endswith("packed.blocks")})
PY
  echo "\$ g2g train \$A --out $n --resume"; $G train $A --out $n --resume 2>&1 | tail -n 2; echo "rc=${PIPESTATUS[0]}"
  $P /tmp/audit/cmpfull.py $n ${n}ref
done
