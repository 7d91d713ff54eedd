#!/bin/bash
# The README command with --gpu 0,1 on two H100s, the quick profile as the seed's workload; then the
# concurrency suite named on the command line, split over both GPUs.
set -u
cd "$(dirname "$0")/.."
T() { local s=$(date +%s.%N); "$@"; local rc=$?; echo "[$(python3 -c "print(round($(date +%s.%N)-$s,1))") s rc=$rc] $*" >> $OUT/times.txt; return $rc; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export BENCH_CACHE_DIR=/tmp/cache HF_HUB_OFFLINE=1 PYTHONPATH=/tmp/site:$PWD
(nvidia-smi --query-gpu=name,driver_version --format=csv; nvidia-smi topo -m; nproc) > $OUT/machine.txt 2>&1
T python3 -c "from bench.models.tiny import ensure_built; ensure_built()"
R=/tmp/runs; mkdir -p $R
T python3 -m pytest suites/ --gpu 0,1 -p no:cacheprovider --report-dir $R --run-id readme-gpu01 > $OUT/readme-gpu01.log 2>&1
T python3 -m pytest suites/test_concurrency.py --gpu 0,1 -p no:cacheprovider --report-dir $R --run-id concurrency-gpu01 > $OUT/concurrency-gpu01.log 2>&1
for n in readme-gpu01 concurrency-gpu01; do echo "== $n"; grep -E "^time:|^checks:|^not run|passed|failed" $OUT/$n.log | tail -5; done
grep -h '"_retained"' $R/concurrency-gpu01/results.jsonl | head -0
python3 - <<PY
import json
for l in open('$R/concurrency-gpu01/results.jsonl'):
    r=json.loads(l)
    if r['metric'].endswith('_retained'): print(r['params'].get('placement'), r['metric'], round(r['value'],3), r['extra'].get('low'), r['extra'].get('high'))
PY
tar czf $OUT/runs.tgz -C $R .
cat $OUT/times.txt
