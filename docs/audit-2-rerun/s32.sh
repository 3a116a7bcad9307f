source /tmp/audit/lib.sh; mkdir -p k && cd k
export PYTHONPATH=/tmp/audit/code32   # a copy of the worktree's g2gnet, so the edit below never touches the worktree
A="--grid seed=0,1 --set model=dense --set hidden=512,512,512 --set epochs=3 --threads 1 --out cv"
$P -m g2gnet sweep $A > cv1.log 2>&1 &
SP=$!
while [ "$(cat cv/run-s0/metrics.jsonl 2>/dev/null | wc -l)" -lt 1 ]; do sleep 0.3; done
sleep 1; kill -9 $SP; sleep 1; echo "killed sweep $SP in cell s0 epoch 2"
echo "# audit comment" >> /tmp/audit/code32/g2gnet/models.py; echo "appended a comment to g2gnet/models.py (copy)"
$P -m g2gnet sweep $A; echo "[rerun rc $?]"
$P -c "import json;e=json.load(open('cv/run-s0/env.json'));print('s0 start', e['source_sha256'][:8], 'resumes', [(r['from_epoch'], r['source_sha256'][:8], r.get('code_changed')) for r in e['resumes']])"
$P -c "import json;e=json.load(open('cv/run-s1/env.json'));print('s1 start', e['source_sha256'][:8])"
grep -n "†\|code" cv/report.md | head
