"""`bench report | compare | doctor | baseline | export | merge | cluster`: working with runs outside a
test session, and running the suites sharded over a cluster."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.analysis.options import parse_threshold
from bench.errors import BenchError


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import render_run
    from bench.report.multi import render_comparison, render_history

    if args.history:
        if len(args.runs) != 1:
            raise BenchError("--history takes one directory holding many runs, e.g. bench report reports/ --history")
        out = render_history(Path(args.runs[0]), Path(args.output or Path(args.runs[0]) / "history.html"))
    elif len(args.runs) == 1:
        html, _ = render_run(Path(args.runs[0]))
        out = html
        if args.output:
            out = Path(args.output)
            out.write_text(html.read_text(encoding="utf-8"), encoding="utf-8")
    else:
        out = render_comparison([Path(r) for r in args.runs], Path(args.output or "comparison.html"),
                                parse_threshold(args.threshold))
    print(out)
    return 0


def cmd_baseline_save(args: argparse.Namespace) -> int:
    from bench.commands.baseline_save import freeze

    from bench.analysis.baselines import user_dir

    path = freeze(Path(args.run), args.name, user_dir(args.dir), parse_threshold(args.tolerance), args.force)
    print(path)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import json

    from bench.commands.export import to_pytest_benchmark

    data = json.dumps(to_pytest_benchmark(Path(args.run)), indent=2)
    if args.output:
        Path(args.output).write_text(data)
        print(args.output)
    else:
        print(data)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from bench.telemetry import environment
    from bench.telemetry.devices import nvml_gpus
    from bench.models.cache_check import check_model

    gpus = nvml_gpus()
    print("GPUs:" if gpus else "GPUs: none visible (no NVIDIA driver or NVML): the suites run on the CPU")
    for g in gpus:
        print(f"  {g.index}: {g.name}, {g.memory_gb:.1f} GB, driver {g.driver}, {g.uuid}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in environment.versions().items() if v))
    findings = check_model(args.model, Path(args.cache_dir) if args.cache_dir else None) if args.model else []
    for f in findings:
        print(f"{f.level.upper():5} {f.message}")
    return 1 if any(f.level == "error" for f in findings) else 0


def cmd_merge(args: argparse.Namespace) -> int:
    from bench.commands.merge import merge

    print(merge([Path(r) for r in args.runs], Path(args.output)))
    return 0


NO_TESTS_COLLECTED = 5  # pytest's exit code for a shard that got no case (more shards than groups)
RESERVED_BY_CLUSTER = ("--gpu", "--shard", "--report-dir", "--run-id", "-n", "--workers-per-gpu", "--each-gpu")


def cmd_cluster_run(args: argparse.Namespace) -> int:
    from bench.commands.cluster import cluster_run

    pytest_args = [a for a in args.pytest_args if a != "--"]
    taken = [a for a in pytest_args if a.split("=", 1)[0] in RESERVED_BY_CLUSTER]
    if taken:
        raise BenchError(f"{taken[0]}: set by bench cluster for each shard; leave it out of the pytest arguments")
    if args.shards is not None and args.shards < 1:
        raise BenchError(f"--shards {args.shards}: give 1 or more")
    if not pytest_args:
        raise BenchError("give the pytest arguments to run, e.g. bench cluster run -- suites/ --profile standard")
    run_dir, outcomes = cluster_run(pytest_args, Path(args.report_dir), args.run_id, args.address, args.shards,
                                    args.local_gpus, args.ship_code)
    for o in outcomes:
        what = "no cases fell to it" if o.returncode == NO_TESTS_COLLECTED else f"exit {o.returncode}"
        print(f"shard {o.index}: {what}, {o.records} records")
        if o.returncode not in (0, NO_TESTS_COLLECTED):
            print("\n".join(f"  | {line}" for line in o.output.strip().splitlines()[-15:]))
    print(run_dir)
    return 0 if all(o.returncode in (0, NO_TESTS_COLLECTED) for o in outcomes) else 1


def cmd_compare(args: argparse.Namespace) -> int:
    import os

    from bench.analysis.baselines import load_baseline
    from bench.analysis.compare import compare
    from bench.report.comparison import to_json, to_markdown, to_table
    from bench.records.results import read_results

    from bench.analysis.compare import run_thresholds

    base, new = read_results(Path(args.base)), read_results(Path(args.new))
    overrides = load_baseline(args.baseline).thresholds if args.baseline else run_thresholds(Path(args.base))
    result = compare(base, new, parse_threshold(args.threshold), overrides)
    render = {"table": lambda: to_table(result, args.base, args.new, args.all),
              "markdown": lambda: to_markdown(result, args.base, args.new),
              "json": lambda: to_json(result, args.base, args.new)}[args.format]
    print(render())
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as fh:
            fh.write(to_markdown(result, args.base, args.new) + "\n")
    return 1 if result.regressions else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("report", help="render a run's report.html, a comparison page of several runs, or a history")
    p.add_argument("runs", nargs="+", help="run directories (one: its report; several: side by side)")
    p.add_argument("-o", "--output", help="output HTML file")
    p.add_argument("--history", action="store_true", help="RUNS is one directory of many runs: metrics over time")
    p.add_argument("--threshold", default="5%", help="smallest change that counts on a comparison page")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("baseline", help="baseline files")
    bsub = p.add_subparsers(dest="baseline_command", required=True)
    p = bsub.add_parser("save", help="freeze a run's medians and noise into a baseline file")
    p.add_argument("run")
    p.add_argument("--name", required=True, help="the baseline's name (file baselines/NAME.toml)")
    p.add_argument("--dir", default=None, help="where to write it (default: $BENCH_BASELINE_DIR, else ./baselines)")
    p.add_argument("--tolerance", default="5%", help="least slack around each median (noise may widen it)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_baseline_save)

    p = sub.add_parser("export", help="a run as pytest-benchmark JSON (for tools that read that format)")
    p.add_argument("run")
    p.add_argument("-o", "--output")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("doctor", help="GPUs, driver, versions, and whether a model loads from the HF cache")
    p.add_argument("--model", help="a hub name or local path to check")
    p.add_argument("--cache-dir", help="the HF hub cache (default: HF_HUB_CACHE)")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("merge", help="join shards or per-GPU runs into one run")
    p.add_argument("runs", nargs="+")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("cluster", help="run the suites sharded over a Ray cluster")
    csub = p.add_subparsers(dest="cluster_command", required=True)
    p = csub.add_parser("run", help="one task per GPU (num_gpus=1), each running its shard; one merged run")
    p.add_argument("--address", help="the Ray cluster (ray://HOST:10001 or auto); default: start one here")
    p.add_argument("--shards", type=int, help="number of shards (default: the cluster's GPU count)")
    p.add_argument("--local-gpus", type=int, help="GPUs the cluster started here declares (tests: fake GPUs)")
    p.add_argument("--ship-code", action="store_true",
                   help="send this directory to the workers (Ray working_dir) instead of using the same path there")
    p.add_argument("--report-dir", default="reports")
    p.add_argument("--run-id", help="name of the merged run directory")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="-- then the pytest arguments, e.g. -- suites/")
    p.set_defaults(func=cmd_cluster_run)

    p = sub.add_parser("compare", help="compare two runs; exit 1 when a metric regressed beyond noise")
    p.add_argument("base", help="the reference run directory or results.jsonl")
    p.add_argument("new", help="the run to judge")
    p.add_argument("--threshold", default="5%", help="smallest change that counts (default 5%%)")
    p.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    p.add_argument("--baseline", help="a baseline whose [thresholds] set per-metric thresholds "
                                      "(default: the one the base run was checked against)")
    p.add_argument("--all", action="store_true", help="list unchanged metrics too (table format)")
    p.set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's usage errors exit 2, as bad input should
        return int(exc.code or 0)
    try:
        return args.func(args)
    except BenchError as exc:
        print(f"bench {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
