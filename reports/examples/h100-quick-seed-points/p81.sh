#!/bin/bash
# On p80's warm machine: two cases of the 20B quick run alone (each its own pytest run, on the cache
# the runs left), to set beside the same cases inside the whole run (q20-warm).
set -u
R=/tmp/p80; cd $R/src
export BENCH_CACHE_DIR=/tmp/cache20 HF_HUB_OFFLINE=1 PYTHONPATH=/tmp/site:$R/src PYTHONUNBUFFERED=1
for sel in "suites/test_infer.py -k bs2-medium" "suites/test_train.py -k test_train"; do
  n=alone-$(echo $sel | tr -c 'a-z0-9' '_' | cut -c1-40)
  s=$(date +%s.%N)
  python3 -m pytest $sel --gpu 0 --model replica:gpt-oss-20b -p no:cacheprovider --report-dir $R/runs --run-id $n > $R/$n.log 2>&1
  echo "[$(python3 -c "print(round($(date +%s.%N)-$s,1))") s rc=$?] $sel" | tee -a $R/times.txt
  grep -E "^time:|passed|failed" $R/$n.log | tail -2
done
tar czf $OUT/p81.tgz -C $R runs/alone-* alone-*.log times.txt
