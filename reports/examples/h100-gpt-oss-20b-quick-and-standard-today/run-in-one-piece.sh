#!/bin/bash
# The 20B replica's profile (N names the run, EXTRA adds pytest arguments) on a fresh H100, run in one piece across device calls: the first
# call starts it in a process session of its own (setsid), every call waits up to $1 seconds and
# sends back what the run has written so far.
set -u
EXTRA=${EXTRA:-}
cd "$(dirname "$0")/.."
N=${N:-q20}; R=/tmp/$N
if [ ! -f $R/started ]; then
  [ -d /tmp/site ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  mkdir -p $R/src && cp -r bench suites conftest.py pyproject.toml $R/src/
  (nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc; free -g; df -h /dev/shm /tmp) > $R/machine.txt 2>&1
  date +%s.%N > $R/started
  setsid bash -c "cd $R/src && export BENCH_CACHE_DIR=/tmp/cache HF_HUB_OFFLINE=1 PYTHONPATH=/tmp/site:$R/src PYTHONUNBUFFERED=1;
    s=\$(date +%s.%N); python3 -m pytest suites/ --gpu 0 --model replica:gpt-oss-20b -p no:cacheprovider --durations=0 \
      --report-dir $R/runs --run-id $N $EXTRA > $R/$N.log 2>&1; rc=\$?;
    python3 -c \"print('end to end', round(\$(date +%s.%N)-\$s,1), 's, rc', \$rc)\" > $R/rc" < /dev/null > /dev/null 2>&1 &
fi
deadline=$(( $(date +%s) + ${1:-550} ))
while [ ! -f $R/rc ] && [ $(date +%s) -lt $deadline ]; do sleep 5; done
echo "elapsed since start: $(python3 -c "print(round($(date +%s.%N)-$(cat $R/started),1))") s"
cat $R/rc 2>/dev/null || echo "still running"
grep -h '"case_s"' $R/runs/$N/results.jsonl 2>/dev/null | python3 -c "import sys,json;[print(json.loads(l)['test_id'].split('::')[1], round(json.loads(l)['value'],1)) for l in sys.stdin]"
grep -E "PASSED|FAILED|SKIPPED|ERROR" $R/$N.log | tail -30
tail -n 25 $R/$N.log
tar czf $OUT/$N.tgz -C $R machine.txt $N.log $( [ -f $R/rc ] && echo rc ) runs 2>/dev/null
ls -la $OUT
