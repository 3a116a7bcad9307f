source /tmp/audit/lib.sh; mkdir -p /tmp/audit/f1 && cd /tmp/audit/f1
mount -t tmpfs -o size=400k tmpfs /tmp/audit/f1 && cd /tmp/audit/f1 && df -h . | tail -1
echo '$ g2g train --hidden 64,64,64 --epochs 3 --threads 1 --out full1'
$G train --hidden 64,64,64 --epochs 3 --threads 1 --out full1; echo "rc=$?"
ls -la full1; df -k . | tail -1
echo '$ g2g train --hidden 64,64,64 --epochs 3 --threads 1 --out full1 --resume'
$G train --hidden 64,64,64 --epochs 3 --threads 1 --out full1 --resume; echo "rc=$?"
ls -la full1
$P -c "import json;print('env.json readable, resumes:', len(json.load(open('full1/env.json'))['resumes']))"
$G eval full1; echo "eval rc=$?"
