source /tmp/audit/lib.sh; cd /tmp/audit/ev; rm -rf busy
$G train --model dense --hidden 512,512,512 --epochs 4 --threads 1 --out busy > busy.log 2>&1 &
TP=$!; sleep 3
echo "== E3: 3 s after start (no checkpoint yet: $(ls busy 2>/dev/null | tr '\n' ' '))"
echo "\$ g2g eval busy"; $G eval busy 2>&1 | sed 's#/work/main/.venv/bin/python -m g2gnet#g2g#'; echo "rc=${PIPESTATUS[0]}"
while [ "$(cat busy/metrics.jsonl 2>/dev/null | wc -l)" -lt 1 ]; do sleep 0.3; done; sleep 1
echo "== E4: epoch 1 checkpointed, run still training"
echo "\$ g2g eval busy"; $G eval busy 2>&1; echo "rc=${PIPESTATUS[0]}"
echo "\$ g2g eval busy --allow-partial"; $G eval busy --allow-partial 2>&1; echo "rc=${PIPESTATUS[0]}"
wait $TP; echo "training finished: $(tail -1 busy.log)"
echo "\$ g2g eval busy   # finished"; $G eval busy 2>&1; echo "rc=${PIPESTATUS[0]}"
echo "== E4: a killed (partial) run"
rm -rf killed; $G train --model dense --hidden 256,256 --epochs 3 --threads 1 --out killed > /dev/null 2>&1 &
TP=$!; while [ "$(cat killed/metrics.jsonl 2>/dev/null | wc -l)" -lt 1 ]; do sleep 0.3; done; sleep 0.5; kill -9 $TP; wait $TP 2>/dev/null
echo "\$ g2g eval killed"; $G eval killed 2>&1; echo "rc=${PIPESTATUS[0]}"
echo "\$ g2g eval killed --allow-partial"; $G eval killed --allow-partial 2>&1; echo "rc=${PIPESTATUS[0]}"
