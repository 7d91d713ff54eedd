#!/bin/bash
# The adapter round trip's distribution gap on an H100: the 20B replica (Unsloth) three times, the
# tiny model with hf and with Unsloth. In one piece across calls (setsid); every call waits up to $1 s.
set -u
cd "$(dirname "$0")/.."
R=/tmp/p71
if [ ! -f $R/started ]; then
  mkdir -p $R/src && cp -r bench suites conftest.py pyproject.toml $R/src/
  date +%s.%N > $R/started
  cat > $R/inner.sh <<INNER
T() { local s=\$(date +%s.%N); "\$@"; local rc=\$?; echo "[\$(python3 -c "print(round(\$(date +%s.%N)-\$s,1))") s rc=\$rc] \$*" >> $R/times.txt; return \$rc; }
cd $R/src
[ -d /tmp/site ] || T python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site $PWD/.whl/*.whl
nvidia-smi --query-gpu=name,driver_version --format=csv > $R/machine.txt 2>&1
export BENCH_CACHE_DIR=/tmp/cache HF_HUB_OFFLINE=1 PYTHONPATH=/tmp/site:$R/src PYTHONUNBUFFERED=1
run() { local n=\$1; shift; T python3 -m pytest suites/test_adapter.py --gpu 0 -p no:cacheprovider --report-dir $R/runs --run-id \$n "\$@" > $R/\$n.log 2>&1; }
run a20-1 --model replica:gpt-oss-20b
run a20-2 --model replica:gpt-oss-20b
run a20-3 --model replica:gpt-oss-20b
T python3 -c 'from bench.models.tiny import ensure_built; ensure_built()'
run tiny-hf
run tiny-unsloth --backend unsloth
echo done > $R/rc
INNER
  setsid bash $R/inner.sh < /dev/null > $R/inner.log 2>&1 &
fi
deadline=$(( $(date +%s) + ${1:-550} ))
while [ ! -f $R/rc ] && [ $(date +%s) -lt $deadline ]; do sleep 5; done
echo "elapsed since start: $(python3 -c "print(round($(date +%s.%N)-$(cat $R/started),1))") s"; cat $R/rc 2>/dev/null || echo "still running"
grep -v "pip install" $R/times.txt
grep -h '"adapter_reload_gap"' $R/runs/*/results.jsonl | python3 -c "import sys,json;[print((r:=json.loads(l))['run_id'], r['value'], r['extra'].get('greedy_agreement'), repr(r['extra'].get('in_memory'))[:80]) for l in sys.stdin]"
for f in $R/*.log; do echo "== $f"; grep -E "passed|failed|Error" $f | tail -3; done
tar czf $OUT/p71.tgz -C $R machine.txt times.txt $(cd $R && ls *.log) runs $( [ -f $R/rc ] && echo rc ) 2>/dev/null
