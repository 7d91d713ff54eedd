#!/bin/bash
# The sequence p92.sh starts in a session of its own; $1: the results folder, $2: the checkout.
R=$1; SRC=$2; WHL=$3
T() { local s=$(date +%s.%N); "$@"; local rc=$?; echo "[$(python3 -c "print(round($(date +%s.%N)-$s,1))") s rc=$rc] $*" >> $R/times.txt; return $rc; }
cd $SRC
T python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site $WHL/*.whl
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc; free -g; df -h /dev/shm /tmp; ls -d /tmp/torchinductor_* ~/.triton ~/.cache/unsloth 2>&1) > $R/machine.txt 2>&1
export HF_HUB_OFFLINE=1 PYTHONPATH=/tmp/site:$SRC PYTHONUNBUFFERED=1
run() { local n=$1; shift; T python3 -m pytest suites/ --gpu 0 -p no:cacheprovider --durations=0 --report-dir $R/runs --run-id $n "$@" > $R/$n.log 2>&1; }
fresh() { rm -rf /tmp/torchinductor_* ~/.triton ~/.cache/unsloth $SRC/unsloth_compiled_cache; export BENCH_CACHE_DIR=$1; }
fresh /tmp/cache-q20
run q20-cold --model replica:gpt-oss-20b
export BENCH_CACHE_DIR=/tmp/cache-tiny
T python3 -c 'from bench.models.tiny import ensure_built; ensure_built()'
run readme
# Unsloth's import in a fresh interpreter after torch's (as an isolated child imports it), first
# with no bytecode for the wheels (pip --no-compile, as above), then with the bytecode that wrote
imp() { CUDA_VISIBLE_DEVICES=0 TORCHINDUCTOR_CACHE_DIR=/tmp/imp/ind TRITON_CACHE_DIR=/tmp/imp/tri UNSLOTH_COMPILE_LOCATION=/tmp/imp/uc \
  python3 -c 'import time, torch; t = time.perf_counter(); import unsloth; print(f"'"$1"': import unsloth {time.perf_counter() - t:.2f} s")' 2>/dev/null | tail -1 >> $R/imports.txt; }
find /tmp/site -name __pycache__ -type d -prune -exec rm -rf {} +
imp "no bytecode"
imp "bytecode written by the import before"
imp "bytecode, again"
echo done > $R/rc
