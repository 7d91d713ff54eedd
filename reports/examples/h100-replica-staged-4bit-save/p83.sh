#!/bin/bash
# The 20B replica's preparation before and after the staged 4-bit save, on one fresh H100: each
# inside `pytest suites/test_load.py` on an empty cache (so both loads read what was saved), then
# the two 4-bit checkpoints compared tensor by tensor, then a generation case on the new one.
set -u
R=/tmp/p83; mkdir -p $R; cd "$(dirname "$0")/.."
T() { local s=$(date +%s.%N); "$@"; local rc=$?; echo "[$(python3 -c "print(round($(date +%s.%N)-$s,1))") s rc=$rc] $*" | tee -a $R/times.txt; return $rc; }
T python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl > /dev/null
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc; free -g; cat /sys/kernel/mm/transparent_hugepage/enabled) > $R/machine.txt 2>&1
rm -rf $R/old && mkdir -p $R/old && cp -r bench suites conftest.py pyproject.toml $R/old/ && cp .gpu/old/replica.py $R/old/bench/models/replica.py && cp .gpu/old/unsloth.py $R/old/bench/backends/unsloth.py
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
run() { local n=$1 src=$2; shift 2; (cd $src && BENCH_CACHE_DIR=/tmp/c-$n PYTHONPATH=/tmp/site:$src T python3 -m pytest "$@" --gpu 0 --model replica:gpt-oss-20b -p no:cacheprovider --report-dir $R/runs --run-id $n > $R/$n.log 2>&1); grep -E "^time:|passed|failed" $R/$n.log | tail -2; cat /tmp/c-$n/replica-gpt-oss-20b-unsloth-4bit/build.json 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); print({k: d[k] for k in d if k.endswith('_s') or k=='save_writer'}, d.get('bf16',{}).get('write_s'))" 2>/dev/null; }
run before $R/old suites/test_load.py
run after $PWD suites/test_load.py
ls /tmp/c-before /tmp/c-after; for n in before after; do cp /tmp/c-$n/replica-gpt-oss-20b-unsloth-4bit/build.json $R/build-$n.json; done
T python3 - <<'PY' 2>&1 | tee $R/same.txt
import glob, json
from safetensors import safe_open
def files(c): return sorted(glob.glob(f"/tmp/c-{c}/replica-gpt-oss-20b-unsloth-4bit/*.safetensors"))
a, b = files("before"), files("after")
print(len(a), len(b), [x.split("/")[-1] for x in b])
ka, kb = {}, {}
for fs, into in ((a, ka), (b, kb)):
    for f in fs:
        with safe_open(f, "pt") as h:
            for k in h.keys(): into[k] = (f, h.metadata())
print("keys equal:", set(ka) == set(kb), len(ka))
diff = 0
for k in ka:
    with safe_open(ka[k][0], "pt") as x, safe_open(kb[k][0], "pt") as y:
        if not (x.get_tensor(k).view(-1).view(__import__("torch").uint8).equal(y.get_tensor(k).view(-1).view(__import__("torch").uint8))): diff += 1
print("tensors differing:", diff)
PY
BENCH_CACHE_DIR=/tmp/c-after; (cd $PWD && BENCH_CACHE_DIR=/tmp/c-after PYTHONPATH=/tmp/site:$PWD T python3 -m pytest suites/test_infer.py -k bs1-low --gpu 0 --model replica:gpt-oss-20b -p no:cacheprovider --report-dir $R/runs --run-id after-infer > $R/after-infer.log 2>&1); grep -E "^time:|checks|passed|failed" $R/after-infer.log | tail -3
tar czf $OUT/p83.tgz -C $R machine.txt times.txt same.txt $(cd $R && ls *.log *.json) runs
