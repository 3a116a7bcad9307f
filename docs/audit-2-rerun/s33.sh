source /tmp/audit/lib.sh; mkdir -p k && cd k
printf 'out="dd"\n[fixed]\nmodel="dense"\nhidden="256,256"\nepochs=2\n[[grid]]\nseed=[0,1]\n' > d1.toml; cp d1.toml d2.toml
echo "=== S33: g2g sweep d1.toml d2.toml --workers 4 (same out and cells)"
$G sweep d1.toml d2.toml --workers 4 --threads 1 --no-report; echo "[rc $?]"
ls dd dd/logs; for f in dd/logs/*; do echo "-- $f"; tail -2 $f; done
for r in dd/run-s0 dd/run-s1; do $P -c "import json;print('$r', 'epochs',[json.loads(l)['epoch'] for l in open('$r/metrics.jsonl')], 'resumes',[x['from_epoch'] for x in json.load(open('$r/env.json'))['resumes']])"; done
echo "=== S39: partial cell (epochs=3, killed after epoch 1), re-run with epochs=5"
$G sweep --grid seed=0 --set model=dense --set hidden=256,256 --set epochs=3 --threads 1 --out pc --no-report > pc1.log 2>&1 &
SP=$!; while [ "$(cat pc/run-s0/metrics.jsonl 2>/dev/null | wc -l)" -lt 1 ]; do sleep 0.2; done; kill -9 $SP; sleep 1
(cd pc/run-s0 && md5sum * > ../../pc.md5)
$G sweep --grid seed=0 --set model=dense --set hidden=256,256 --set epochs=5 --threads 1 --out pc --no-report; echo "[rc $?]"
(cd pc/run-s0 && md5sum -c ../../pc.md5)
echo "=== S34: SIGINT to the sweep process only (disposition reset), cell s0 in epoch 2"
$P -c "import signal,os,sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])" $P -m g2gnet sweep --grid seed=0,1 --set model=dense --set hidden=512,512,512 --set epochs=3 --threads 1 --out si --no-report > si.log 2>&1 &
SP=$!; while [ "$(cat si/run-s0/metrics.jsonl 2>/dev/null | wc -l)" -lt 1 ]; do sleep 0.2; done; sleep 1
W=$(pgrep -P $SP); echo "SIGINT to sweep $SP (worker $W)"; kill -INT $SP; wait $SP; echo "[sweep rc $?]"; cat si.log
sleep 1; echo "worker alive: $(ps -p $W -o pid= || echo no)"; ls si/run-s0; wc -l < si/run-s0/metrics.jsonl
