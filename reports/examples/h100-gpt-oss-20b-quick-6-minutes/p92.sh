#!/bin/bash
# Correctness checks side by side (issue 15, quick's 6 minutes): on one fresh H100, the 20B
# replica's quick profile from an empty cache (compilers' caches cleared, bytecode not compiled,
# as in p90/p91), then the README command, then Unsloth's import with and without its bytecode.
# In one piece across device calls (setsid); every call waits up to $1 s.
set -u
cd "$(dirname "$0")/.."
R=/tmp/p92
if [ ! -f $R/started ]; then
  mkdir -p $R/src && cp -r bench suites conftest.py pyproject.toml $R/src/
  date +%s.%N > $R/started
  setsid bash .gpu/p92-inner.sh $R $R/src $PWD/.whl < /dev/null > $R/inner.log 2>&1 &
fi
deadline=$(( $(date +%s) + ${1:-550} ))
while [ ! -f $R/rc ] && [ $(date +%s) -lt $deadline ]; do sleep 5; done
echo "elapsed since start: $(python3 -c "print(round($(date +%s.%N)-$(cat $R/started),1))") s"
cat $R/rc 2>/dev/null || echo "still running"
cat $R/times.txt 2>/dev/null
for n in q20-cold readme; do [ -f $R/$n.log ] && { echo "== $n"; grep -E "^time:|^checks:|passed|failed|isolation" $R/$n.log | tail -5; }; done
cat $R/imports.txt 2>/dev/null
tail -n 5 $(ls -t $R/*.log | head -1)
tar czf $OUT/p92.tgz -C $R machine.txt times.txt $(cd $R && ls *.log *.txt) runs $( [ -f $R/rc ] && echo rc ) 2>/dev/null
ls -la $OUT
