#!/bin/bash
# The README command on one H100 after the isolator keeps its running children for `close`
# (3e69960): a check that the normal path is unchanged, results under $OUT.
set -u
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc; free -g) > $OUT/machine.txt 2>&1
export HF_HUB_OFFLINE=1 PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 BENCH_CACHE_DIR=/tmp/cache-tiny
s=$(date +%s.%N)
python3 -c 'from bench.models.tiny import ensure_built; ensure_built()'
t=$(date +%s.%N)
python3 -m pytest suites/ --gpu 0 -p no:cacheprovider --durations=0 --report-dir $OUT/runs --run-id readme > $OUT/readme.log 2>&1
echo "rc=$? readme end to end $(python3 -c "print(round($(date +%s.%N)-$t,1))") s; build $(python3 -c "print(round($t-$s,1))") s" | tee $OUT/times.txt
grep -E "^time:|^checks:|passed|failed" $OUT/readme.log | tail -4
grep -h "isolation" $OUT/runs/readme/summary.md | cut -c1-400
