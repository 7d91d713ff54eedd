#!/bin/bash
# Compile caches under BENCH_CACHE_DIR: A (empty everything), B (only BENCH_CACHE_DIR kept: a CI job restoring one directory), C (prepared model kept, compile caches wiped).
set -u
cd "$(dirname "$0")/.."
R=/tmp/cc
if [ ! -f $R/started ]; then
  [ -d /tmp/site ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  mkdir -p $R/src && cp -r bench suites conftest.py pyproject.toml $R/src/
  (nvidia-smi --query-gpu=name,driver_version --format=csv; nproc) > $R/machine.txt 2>&1
  date +%s.%N > $R/started
  setsid bash -c "cd $R/src && export BENCH_CACHE_DIR=/tmp/cA HF_HUB_OFFLINE=1 UNSLOTH_ENABLE_LOGGING=1 PYTHONPATH=/tmp/site:$R/src PYTHONUNBUFFERED=1;
    wipe() { rm -rf /tmp/torchinductor_* ~/.triton ~/.cache/unsloth $R/src/unsloth_compiled_cache; }
    look() { echo \"== after \$1\"; du -sh /tmp/cA/compile/* 2>&1; grep -rh \"Mega-cache\" $R/runs/\$1/isolation-logs*/*.log | sort | uniq -c; ls -d /tmp/torchinductor_* ~/.triton ~/.cache/unsloth $R/src/unsloth_compiled_cache 2>&1; }
    wipe
    for n in A B C; do
      [ \$n = B ] && wipe
      [ \$n = C ] && { wipe; rm -rf /tmp/cA/compile; }
      s=\$(date +%s.%N); python3 -m pytest suites/test_train.py::test_train suites/test_infer.py -k 'test_train or bs1-low' --gpu 0 --model 'replica:gpt-oss-20b@layers=4' -p no:cacheprovider \
        --report-dir $R/runs --run-id \$n > $R/\$n.log 2>&1; echo \$n \$? \$(python3 -c \"print(round(\$(date +%s.%N)-\$s,1))\") >> $R/rcs
      look \$n >> $R/caches.txt 2>&1
    done; touch $R/rc" < /dev/null > /dev/null 2>&1 &
fi
deadline=$(( $(date +%s) + ${1:-550} ))
while [ ! -f $R/rc ] && [ $(date +%s) -lt $deadline ]; do sleep 5; done
echo "elapsed since start: $(python3 -c "print(round($(date +%s.%N)-$(cat $R/started),1))") s"
cat $R/rcs $R/caches.txt 2>/dev/null
for n in A B C; do [ -f $R/runs/$n/results.jsonl ] && python3 - $R/runs/$n $n <<'PY'
import json, sys
m = json.load(open(sys.argv[1] + "/manifest.json"))
print(sys.argv[2], "timings", {k: v for k, v in m.get("timings", {}).items() if k in ("prepare_model_s", "engine_import_s", "run_wall_s")})
for l in open(sys.argv[1] + "/results.jsonl"):
    r = json.loads(l); e = r.get("extra") or {}
    if r["metric"] == "case_s":
        print(sys.argv[2], r["test_id"].split("::")[-1], round(r["value"], 1), e.get("phases"))
    if r["metric"] in ("s_per_step", "decode_tok_s", "load_s"):
        print(sys.argv[2], r["test_id"].split("::")[-1], r["metric"], round(r["value"], 3))
PY
done
tail -n 3 $R/*.log
tar czf $OUT/cc.tgz -C $R machine.txt $(ls $R | grep -E "^[ABC].log|rcs|caches.txt") runs 2>/dev/null
