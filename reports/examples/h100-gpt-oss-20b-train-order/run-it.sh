#!/bin/bash
# Training order effect: the 20B standard training cases twice (cold caches, then warm), then the last case alone.
set -u
cd "$(dirname "$0")/.."
R=/tmp/ord
if [ ! -f $R/started ]; then
  [ -d /tmp/site ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  mkdir -p $R/src && cp -r bench suites conftest.py pyproject.toml .gpu/sampler.py $R/src/
  (nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; nproc; lscpu | grep -E "Model name|Thread|Core|Socket"; free -g) > $R/machine.txt 2>&1
  date +%s.%N > $R/started
  setsid bash -c "cd $R/src && export BENCH_CACHE_DIR=/tmp/cache HF_HUB_OFFLINE=1 PYTHONPATH=/tmp/site:$R/src PYTHONUNBUFFERED=1;
    python3 sampler.py $R/sampler.jsonl & 
    for n in cold warm; do s=\$(date +%s.%N); python3 -m pytest suites/test_train.py::test_train --gpu 0 --model replica:gpt-oss-20b --profile standard -p no:cacheprovider --durations=0 \
      --report-dir $R/runs --run-id \$n > $R/\$n.log 2>&1; echo \$n \$? \$(python3 -c \"print(round(\$(date +%s.%N)-\$s,1))\") >> $R/rcs; done;
    s=\$(date +%s.%N); python3 -m pytest 'suites/test_train.py::test_train[r32-b4x4]' --gpu 0 --model replica:gpt-oss-20b --profile standard -p no:cacheprovider \
      --report-dir $R/runs --run-id alone > $R/alone.log 2>&1; echo alone \$? \$(python3 -c \"print(round(\$(date +%s.%N)-\$s,1))\") >> $R/rcs; touch $R/rc" < /dev/null > /dev/null 2>&1 &
fi
deadline=$(( $(date +%s) + ${1:-550} ))
while [ ! -f $R/rc ] && [ $(date +%s) -lt $deadline ]; do sleep 5; done
echo "elapsed since start: $(python3 -c "print(round($(date +%s.%N)-$(cat $R/started),1))") s"
cat $R/rcs 2>/dev/null
for n in cold warm alone; do [ -f $R/runs/$n/results.jsonl ] && python3 - $R/runs/$n/results.jsonl $n <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    e = r.get("extra") or {}
    if r["metric"] in ("s_per_step", "others_cpu_cores", "case_s"):
        s = r.get("samples") or []
        print(sys.argv[2], r["test_id"].split("[")[-1], r["metric"], round(r["value"], 3) if r["value"] is not None else None, [round(x, 2) for x in s][:10], {k: v for k, v in e.items() if k in ("steal_pct", "warmup_step_s", "phases")})
PY
done
tail -n 5 $R/*.log
tar czf $OUT/ord.tgz -C $R machine.txt cold.log $(ls $R | grep -E "warm.log|alone.log|rcs|sampler.jsonl") runs 2>/dev/null
ls -la $OUT
