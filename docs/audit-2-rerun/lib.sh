export PYTHONPATH=/work/wt-audit G2G_DATA=/work/data
P=/work/main/.venv/bin/python
G="$P -m g2gnet"
cd /tmp/audit/s
# c ID cmd : run cmd (string), log to logs/ID.txt (appending)
c() { local id=$1; shift; { echo "\$ $*"; bash -c "$*" 2>&1 | tail -n ${TAILN:-15}; echo "rc=${PIPESTATUS[0]}"; echo; } | sed "s#/work/main/.venv/bin/python -m g2gnet#g2g#g" >> /tmp/audit/logs/$id.txt; }
