#!/bin/bash
# The README command twice on another fresh H100 host: how far the 90 s bar holds from host to host.
set -u
cd "$(dirname "$0")/.."
T() { local s=$(date +%s.%N); "$@"; local rc=$?; echo "[$(python3 -c "print(round($(date +%s.%N)-$s,1))") s rc=$rc] $*" >> $OUT/times.txt; return $rc; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export BENCH_CACHE_DIR=/tmp/cache HF_HUB_OFFLINE=1 PYTHONPATH=/tmp/site:$PWD
(nvidia-smi --query-gpu=name,driver_version --format=csv; nproc; lscpu | grep -E "Model name|MHz") > $OUT/machine.txt 2>&1
T python3 -c "from bench.models.tiny import ensure_built; ensure_built()"
R=/tmp/runs; mkdir -p $R
for i in 1 2; do
  T python3 -m pytest suites/ --gpu 0 -p no:cacheprovider --report-dir $R --run-id readme-$i > $OUT/readme-$i.log 2>&1
  echo "readme-$i: $(grep -E '^time:' $OUT/readme-$i.log) | $(grep -E '^checks:' $OUT/readme-$i.log) | $(tail -n 1 $OUT/readme-$i.log)" >> $OUT/times.txt
done
python3 -c "
import json
for i in (1,2):
    m=json.load(open(f'$R/readme-{i}/manifest.json')); print(i, m['timings'])" >> $OUT/times.txt
tar czf $OUT/runs.tgz -C $R .
cat $OUT/times.txt
