"""How often `bench compare` is wrong on this machine, measured.

    python -m bench.commands.errorrate --runs 6 --slowdowns 0.1,0.25 --per-slowdown 2 --out errorrate/

Runs the quick CPU profile `--runs` times unchanged and `--per-slowdown` times at each injected
slowdown (BENCH_TEST_SLOWDOWN stretches every timed step and token by that fraction), then
compares: every pair of unchanged runs (a regression there is a false alarm) and every slowed run
against every unchanged one (no regression on the slowed metrics is a miss).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

from bench.analysis.compare import compare, run_thresholds
from bench.records.results import read_results

SLOWED = ("s_per_step", "train_tokens_per_s", "decode_tok_s", "itl_p50_ms")


def run_suites(out: Path, run_id: str, slowdown: float, extra: list[str]) -> Path:
    env = {**os.environ, "BENCH_TEST_SLOWDOWN": str(slowdown)}
    cmd = [sys.executable, "-m", "pytest", "suites/", "-q", "--gpu", "cpu", "--benchmark-disable",
           "--report-dir", str(out), "--run-id", run_id, "-p", "no:warnings", *extra]
    subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    return out / run_id


def measure(out: Path, runs: int, slowdowns: list[float], per_slowdown: int, threshold: float,
            extra: list[str]) -> dict:
    normal = [run_suites(out, f"normal-{i}", 0.0, extra) for i in range(runs)]
    slowed = {s: [run_suites(out, f"slow{int(s * 100)}-{i}", s, extra) for i in range(per_slowdown)]
              for s in slowdowns}
    records = {p: read_results(p) for p in normal + [p for ps in slowed.values() for p in ps]}
    pairs = list(itertools.combinations(normal, 2))
    false_alarms = []
    for a, b in pairs:  # thresholds as `bench compare` applies them: the base run's baseline's
        regressions = compare(records[a], records[b], threshold, run_thresholds(a)).regressions
        false_alarms.append([f"{c.suite} {c.metric} {c.params}" for c in regressions])
    detection = {}
    for s, runs_s in slowed.items():
        hits = []
        for slow, base in itertools.product(runs_s, normal):
            named = {c.metric for c in compare(records[base], records[slow], threshold, run_thresholds(base)).regressions}
            hits.append(bool(named & set(SLOWED)))
        detection[str(s)] = {"pairs": len(hits), "detected": sum(hits), "rate": sum(hits) / len(hits)}
    return {"threshold": threshold, "normal_runs": runs, "pairs": len(pairs),
            "false_alarm_pairs": sum(1 for f in false_alarms if f), "false_alarm_rate":
            sum(1 for f in false_alarms if f) / len(pairs), "false_alarms": false_alarms, "detection": detection}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.commands.errorrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--slowdowns", default="0.1,0.25")
    parser.add_argument("--per-slowdown", type=int, default=2)
    parser.add_argument("--threshold", type=float, default=0.05)
    parser.add_argument("--out", default="errorrate")
    args, extra = parser.parse_known_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = measure(out, args.runs, [float(s) for s in args.slowdowns.split(",")], args.per_slowdown,
                     args.threshold, extra)
    (out / "errorrate.json").write_text(json.dumps(result, indent=2))
    print(f"false alarms: {result['false_alarm_pairs']} of {result['pairs']} pairs of unchanged runs")
    for s, d in result["detection"].items():
        print(f"slowdown {float(s):.0%}: detected in {d['detected']} of {d['pairs']} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
