#!/bin/bash
# Does gc.freeze after the engine's import move the 20B replica's warm load? Same host, in-process
# (--isolate off), alternating with (A) and without (B) the freeze.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl >/dev/null 2>&1 || { echo pip failed; exit 1; }
export PYTHONPATH=/tmp/site:$PWD:$PWD/.gpu BENCH_CACHE_DIR=$PWD/.cache/bench PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > $OUT/gpu.txt
T0=$(date +%s)
for run in A1 B1 A2 B2 A3 B3; do
  (( $(date +%s) - T0 > 470 )) && break
  extra=""; [[ $run == B* ]] && extra="-p nofreeze"
  timeout -k 10 200 python3 -m pytest suites/test_load.py --gpu 0 --model replica:gpt-oss-20b --isolate off $extra -p no:cacheprovider --report-dir /tmp/runs --run-id $run > $OUT/$run.log 2>&1
  python3 - $run <<'PY'
import json, sys
run = sys.argv[1]
rows = [json.loads(l) for l in open(f"/tmp/runs/{run}/results.jsonl")]
loads = {r["params"]["cache"]: r["samples"] for r in rows if r["metric"] == "load_s"}
print(run, json.dumps(loads))
PY
done | tee $OUT/ab.txt
find /tmp/runs -name '*.go' -delete 2>/dev/null
for r in /tmp/runs/*/; do n=$(basename $r); mkdir -p $OUT/$n; cp $r/summary.md $r/manifest.json $OUT/$n/ 2>/dev/null; done
