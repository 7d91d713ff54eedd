"""`bench errorrate`: how often the gate is wrong on this machine, measured as users meet it.

    bench errorrate --experiments 10 --rounds 3 --slowdowns 0.1,0.25 --out errorrate/ -- suites/ -k "train or infer"

Every condition is one chain of `bench ab` rounds of the working tree against itself: unchanged
(A/A), and once per slowdown level with side B slowed by the test-only BENCH_TEST_SLOWDOWN hook
(every timed training step and generated token stretched by that fraction). From each chain:
- `bench compare`: each round's A and B are two runs made one after the other; a pair that exits 1
  is a false alarm in the A/A chain and a detection in a slowed one;
- `bench ab`: consecutive windows of --max-rounds rounds are paired comparisons, each judged as
  `bench ab --rounds R --max-rounds M` judges (a look every R rounds, stopping once decided); each
  window is one experiment (disjoint windows; the overlapping ones are reported beside them).
An alarm is what CI sees: the comparison fails (a gating regression), whatever metric it names.
`--noise cpu` runs busy neighbours during every run (processes spinning on the cores), `--noise
gpu` a neighbour doing bf16 matrix products on the GPU, so the rates hold for a machine that is
not quiet either.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

from bench.analysis.compare import Rules, baseline_of_run, compare, replay_sequential
from bench.analysis.options import THRESHOLD_DEFAULT, parse_threshold
from bench.commands.ab import DEFAULT_ROUNDS, max_rounds_of, run_ab
from bench.errors import BenchError
from bench.records.results import RunManifest, read_results
from bench.telemetry.failpoints import SLOWDOWN_ENV

GPU_NEIGHBOUR = ("import torch\na = torch.randn(8192, 8192, device='cuda', dtype=torch.bfloat16)\n"
                 "while True:\n    a @ a\n    torch.cuda.synchronize()\n")
CPU_NEIGHBOUR = "while True:\n    pass\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiments", type=int, default=10, help="bench ab experiments per condition (default 10)")
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                   help=f"bench ab's --rounds: rounds between its looks (default {DEFAULT_ROUNDS})")
    p.add_argument("--max-rounds", type=int, default=None,
                   help="bench ab's --max-rounds: an experiment's window of rounds (default: bench ab's, 4 x --rounds)")
    p.add_argument("--slowdowns", default="0,0.1,0.25",
                   help="slowdown levels of side B, fractions; 0 is the unchanged (A/A) chain (default 0,0.1,0.25)")
    p.add_argument("--threshold", default=THRESHOLD_DEFAULT, help="the gate's threshold (default %(default)s, per-metric ones from the baseline)")
    p.add_argument("--noise", choices=("none", "cpu", "gpu"), default="none", help="busy neighbours during the runs")
    p.add_argument("--out", default="errorrate", help="where the chains' runs and errorrate.json go")
    p.add_argument("--judge-only", action="store_true",
                   help="run nothing: judge the chains already in --out again (another --rounds window, a new engine)")
    p.set_defaults(func=main, takes_pytest_args=True)


@contextlib.contextmanager
def neighbour(kind: str):
    """Busy neighbours for the length of a chain: every core spinning, or a GPU multiplying."""
    if kind == "none":
        yield
        return
    code, count = (CPU_NEIGHBOUR, os.cpu_count() or 1) if kind == "cpu" else (GPU_NEIGHBOUR, 1)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def judge_chain(a_runs: list, b_runs: list, rounds: int, compare_rules: Rules, ab_rules: Rules,
                max_rounds: int | None = None) -> dict:
    """One chain's verdicts: per round as `bench compare`, per window as `bench ab` with `--rounds
    rounds --max-rounds max_rounds` (a window of `max_rounds` rounds, of which the sequential
    comparison uses what it needs), each with the rules it applies by default."""
    max_rounds = max_rounds or rounds
    pairs = [compare(a, b, compare_rules) for a, b in zip(a_runs, b_runs)]
    n = len(a_runs)
    windows = {start: replay_sequential(a_runs[start:start + max_rounds], b_runs[start:start + max_rounds],
                                        ab_rules, rounds, max_rounds)
               for start in range(0, n - max_rounds + 1)}
    disjoint = [windows[s][0] for s in range(0, n - max_rounds + 1, max_rounds)]
    used = [u for _, u in windows.values()]

    def alarms(results) -> list[list[str]]:
        return [[f"{c.suite} {c.metric} {c.params}: {c.change_pct:+.1f}%" for c in r.regressions] for r in results]

    return {"compare": {"pairs": len(pairs), "alarms": sum(r.failed for r in pairs), "named": alarms(pairs)},
            "ab": {"experiments": len(disjoint), "alarms": sum(r.failed for r in disjoint), "named": alarms(disjoint),
                   "overlapping_experiments": len(windows),
                   "overlapping_alarms": sum(r.failed for r, _ in windows.values()),
                   "mean_rounds": round(sum(used) / len(used), 1) if used else None}}


def measure(out: Path, experiments: int, rounds: int, max_rounds: int, slowdowns: list[float], threshold: float,
            noise: str, pytest_args: list[str], echo=print) -> dict:
    # A chain's rounds are A-0, B-0, A-1, ...: a new chain written over an older one would leave the
    # older one's later rounds beside it, judged as if they were its own (seen on an H100).
    chains = [chain_dir(out, level) for level in slowdowns]
    used = [chain for chain in chains if any((chain / "runs").glob("*"))]
    if used:
        raise BenchError(f"{used[0]} already holds a chain: give another --out, or judge it again with --judge-only")
    result = {"experiments": experiments, "rounds": rounds, "max_rounds": max_rounds, "threshold": threshold,
              "noise": noise, "pytest_args": pytest_args, "conditions": {}}
    for level in slowdowns:
        name = condition_name(level)
        chain = chain_dir(out, level)
        echo(f"{name}: {experiments * max_rounds} rounds in {chain}")
        with neighbour(noise):
            a_runs, b_runs = run_ab((".", "."), pytest_args, chain, experiments * max_rounds,
                                    env_for={"B": {SLOWDOWN_ENV: str(level)}} if level else None, echo=echo)
        result["conditions"][name] = judge_condition(chain, level, a_runs, b_runs, rounds, max_rounds, threshold)
        (out / "errorrate.json").write_text(json.dumps(result, indent=2))  # a chain at a time: nothing lost
    return result


def condition_name(level: float) -> str:
    return "unchanged" if level == 0 else f"slowed {level:.0%}"


def chain_dir(out: Path, level: float) -> Path:
    return out / ("aa" if level == 0 else f"slow{round(level * 100)}")


def judge_condition(chain: Path, level: float, a_runs: list, b_runs: list, rounds: int, max_rounds: int,
                    threshold: float) -> dict:
    """One condition's entry: its chain judged, each round with the baseline's thresholds as
    `bench compare` applies them, each window as `bench ab` does."""
    compare_rules = Rules.of(threshold, baseline_of_run(chain / "runs" / "A-0"))
    return {"slowdown": level, **judge_chain(a_runs, b_runs, rounds, compare_rules, Rules(threshold), max_rounds)}


def rejudge(out: Path, rounds: int, max_rounds: int, threshold: float) -> dict:
    """The chains an earlier `measure` left in `out`, judged again with this engine and window size.
    A chain cut short (a time limit killed it before errorrate.json named it, though an earlier
    chain's entry may be there) is found by its directory name and judged on its complete rounds."""
    saved = json.loads((out / "errorrate.json").read_text()) if (out / "errorrate.json").is_file() else {}
    result = {**saved, "rounds": rounds, "max_rounds": max_rounds, "threshold": threshold, "conditions": {}}
    for level in found_levels(out):
        chain = chain_dir(out, level)
        count = complete_rounds(chain / "runs")
        a_runs = [read_results(chain / "runs" / f"A-{i}") for i in range(count)]
        b_runs = [read_results(chain / "runs" / f"B-{i}") for i in range(count)]
        result["conditions"][condition_name(level)] = judge_condition(chain, level, a_runs, b_runs, rounds,
                                                                      max_rounds, threshold)
    return result


def found_levels(out: Path) -> list[float]:
    """Slowdown levels of the chain directories in `out` (aa, slow10, slow25, ...)."""
    levels = [0.0] if (out / "aa" / "runs").is_dir() else []
    levels += sorted(int(d.name[4:]) / 100 for d in out.glob("slow*") if d.name[4:].isdigit() and (d / "runs").is_dir())
    if not levels:
        raise BenchError(f"--judge-only: {out} holds no chain (aa/ or slowNN/ with runs/); "
                         f"run `bench errorrate --out {out}` first")
    return levels


def complete_rounds(runs: Path) -> int:
    """Rounds from the first whose A and B runs both finished (a killed run is not judged)."""
    count = 0
    while all((runs / f"{side}-{count}" / "manifest.json").is_file()
              and RunManifest.read(runs / f"{side}-{count}").status == "complete" for side in "AB"):
        count += 1
    return count


def table(result: dict) -> str:
    lines = ["| condition | bench compare: runs that fail | bench ab: experiments that fail | (overlapping windows) "
             "| rounds an experiment used (mean) |", "|---|---|---|---|---|"]
    for name, c in result["conditions"].items():
        lines.append(f"| {name} | {c['compare']['alarms']} of {c['compare']['pairs']} | "
                     f"{c['ab']['alarms']} of {c['ab']['experiments']} | "
                     f"{c['ab']['overlapping_alarms']} of {c['ab']['overlapping_experiments']} | "
                     f"{c['ab'].get('mean_rounds') or '-'} |")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    pytest_args = args.pytest_args or ["suites/"]
    out = Path(args.out)
    max_rounds = max_rounds_of(args.rounds, args.max_rounds)
    if args.judge_only:
        print(table(rejudge(out, args.rounds, max_rounds, parse_threshold(args.threshold))))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    slowdowns = [float(s) for s in args.slowdowns.split(",") if s.strip()]
    result = measure(out, args.experiments, args.rounds, max_rounds, slowdowns, parse_threshold(args.threshold), args.noise,
                     pytest_args, echo=lambda line: print(line, file=sys.stderr))
    (out / "errorrate.md").write_text(table(result) + "\n")
    print(table(result))
    return 0
