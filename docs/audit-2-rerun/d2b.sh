source /tmp/audit/lib.sh; cd /work/wt-audit; O=/tmp/audit/d
T="/work/main/.venv/bin/torchrun --nproc_per_node 2 -m g2gnet"
for fast in 0 1; do for val in 59 60; do
  rm -rf $O/x2 $O/x1
  G2G_FAST=$fast $T train --hidden 64,64,64 --epochs 1 --threads 1 --batch-size 180 --val $val --out $O/x2 > /dev/null 2>&1
  G2G_FAST=$fast $G train --hidden 64,64,64 --epochs 1 --threads 1 --batch-size 180 --val $val --out $O/x1 > /dev/null 2>&1
  echo "G2G_FAST=$fast --val $val (last batch: $(( (60000-val) % 180 )) image(s)): 2 processes vs 1"; $P /tmp/audit/cmp.py $O/x2 $O/x1 | tail -n 2
done; done
