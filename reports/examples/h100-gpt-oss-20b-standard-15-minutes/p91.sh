#!/bin/bash
# The 20B replica's quick profile from an empty cache on a second fresh H100, in the foreground,
# results straight under $OUT (a run cut by the call's limit still comes back).
set -u
cd "$(dirname "$0")/.."
s=$(date +%s.%N)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc; free -g) > $OUT/machine.txt 2>&1
export HF_HUB_OFFLINE=1 PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 BENCH_CACHE_DIR=/tmp/cache-q20
t=$(date +%s.%N)
python3 -m pytest suites/ --gpu 0 --model replica:gpt-oss-20b -p no:cacheprovider --durations=0 \
  --report-dir $OUT/runs --run-id q20-cold > $OUT/q20-cold.log 2>&1
echo "rc=$? q20-cold end to end $(python3 -c "print(round($(date +%s.%N)-$t,1))") s; install $(python3 -c "print(round($t-$s,1))") s" | tee $OUT/times.txt
grep -E "^time:|^checks:|passed|failed" $OUT/q20-cold.log | tail -4
