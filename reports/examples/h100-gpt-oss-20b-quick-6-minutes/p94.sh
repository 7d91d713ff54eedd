#!/bin/bash
# The README command on two H100s (`--gpu 0,1`) after the checks-side-by-side and build-ahead
# changes: the workers' path (no side by side, no build ahead there), results under $OUT.
set -u
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc; free -g) > $OUT/machine.txt 2>&1
export HF_HUB_OFFLINE=1 PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 BENCH_CACHE_DIR=/tmp/cache-tiny
s=$(date +%s.%N)
python3 -c 'from bench.models.tiny import ensure_built; ensure_built()'
t=$(date +%s.%N)
python3 -m pytest suites/ --gpu 0,1 -p no:cacheprovider --durations=0 --report-dir $OUT/runs --run-id readme-2gpu > $OUT/readme-2gpu.log 2>&1
echo "rc=$? readme --gpu 0,1 end to end $(python3 -c "print(round($(date +%s.%N)-$t,1))") s; build $(python3 -c "print(round($t-$s,1))") s" | tee $OUT/times.txt
grep -E "^time:|^checks:|passed|failed|isolation" $OUT/readme-2gpu.log | tail -5
