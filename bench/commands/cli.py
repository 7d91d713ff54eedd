"""The `bench` command: judging and publishing runs outside a test session (compare, report, site,
baseline, export, merge, doctor, fit), measuring two versions in alternating rounds (ab, bisect,
errorrate), running the suites sharded over a cluster (cluster), and holding a run's figures against
a plain script's (crosscheck)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.analysis.options import THRESHOLD_DEFAULT, parse_threshold
from bench.errors import BenchError


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import render_run
    from bench.report.multi import render_comparison, render_history

    if args.history:
        if len(args.runs) != 1:
            raise BenchError("--history takes one directory holding many runs, e.g. bench report reports/ --history")
        out = render_history(Path(args.runs[0]), Path(args.output or Path(args.runs[0]) / "history.html"),
                             parse_threshold(args.threshold))
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


def cmd_site(args: argparse.Namespace) -> int:
    from bench.report.site import build_site

    done = build_site([Path(r) for r in args.runs], Path(args.output), parse_threshold(args.threshold))
    print(f"{done['runs']} runs in {done['groups']} groups ({len(done['rendered'])} rendered, "
          f"{len(done['kept'])} unchanged), {done['changes']} change points")
    print(Path(args.output) / "index.html")
    return 0


def cmd_baseline_save(args: argparse.Namespace) -> int:
    from bench.commands.baseline_save import freeze

    from bench.analysis.baselines import user_dir

    tolerance = parse_threshold(args.tolerance) if args.tolerance else None
    path = freeze([Path(r) for r in args.runs], args.name, user_dir(args.dir), tolerance, args.force)
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


def cmd_fit(args: argparse.Namespace) -> int:
    from bench.analysis.memory_model import gpu_memory, parse_memory
    from bench.records.results import read_results

    records = [r for run in args.runs for r in read_results(Path(run))]
    memory = parse_memory(args.gpu_memory) if args.gpu_memory else gpu_memory(args.gpu) if args.gpu else None
    return (_fit_inference if args.infer else _fit_training)(args, records, memory)


def _fit_training(args: argparse.Namespace, records: list, memory: float | None) -> int:
    from bench.analysis.memory_model import TABLE_SIZES_GB, fit, held_out, points_of

    if args.context is not None:
        raise BenchError("--context is for the inference model: add --infer (training takes --rank, --batch, --seq)")
    fitted_on, out = held_out(points_of(records), args.hold_out)
    model = fit(fitted_on)
    if args.rank is not None or args.batch is not None or args.seq is not None:
        if None in (args.rank, args.batch, args.seq):
            raise BenchError("give all three of --rank, --batch and --seq to predict one configuration")
        p = model.predict(args.rank, args.batch, args.seq)
        line = f"r={args.rank}, batch {args.batch}, {args.seq} tokens: {p.peak_gb:.2f} GB ({p.low:.2f}-{p.high:.2f})"
        print(f"{line}; {p.verdict(memory)}" if memory else line)
        return 0 if memory is None or p.high <= memory else 1
    for line in model.describe():
        print(line)
    for point in out:
        p = model.predict(point.lora_r, point.batch_size, point.tokens / point.batch_size)
        print(f"held out {point.label}: measured {point.peak_gb:.2f} GB, predicted {p.peak_gb:.2f} "
              f"({p.low:.2f}-{p.high:.2f}), error {(p.peak_gb / point.peak_gb - 1) * 100:+.1f}%")
    if args.table:
        sizes = (memory,) if memory else TABLE_SIZES_GB
        print("largest batch (prediction interval's upper end within the memory), by rank and sequence length")
        print("rank  seq   " + "  ".join(f"{s:>5g} GB" for s in sizes))
        for rank in (8, 16, 32, 64):
            for seq in (512, 1024, 2048, 4096):
                print(f"{rank:<5} {seq:<5} " + "  ".join(f"{model.largest_batch(rank, seq, s):>8}" for s in sizes))
    return 0


def _fit_inference(args: argparse.Namespace, records: list, memory: float | None) -> int:
    from bench.analysis.inference_memory import CONTEXTS, MIN_POINTS, fit_inference, infer_points_of
    from bench.analysis.memory_model import TABLE_SIZES_GB, held_out
    from bench.report.efficiency_table import model_shape

    if args.rank is not None or args.seq is not None:
        raise BenchError("--rank and --seq are for the training model; the inference model takes --batch and --context")
    lanes = {(r.model, r.backend) for r in records if r.suite == "infer"}
    if len(lanes) != 1:
        raise BenchError(f"--infer needs generation cases of one model on one engine; these runs have "
                         f"{len(lanes) or 'none'}" + (f" ({', '.join(sorted(f'{m} on {b}' for m, b in lanes))})"
                                                      if lanes else " (run pytest suites/test_infer.py)"))
    [(model_name, _)] = lanes
    shape = model_shape(model_name)
    if shape is None:
        raise BenchError(f"{model_name}: its config.json is not to be had offline, and the KV cache comes from it")
    fitted_on, out = held_out(infer_points_of(records), args.hold_out, MIN_POINTS)
    model = fit_inference(fitted_on, shape)
    reach = max(p.context for p in model.points)
    if args.batch is not None or args.context is not None:
        if None in (args.batch, args.context):
            raise BenchError("give both --batch and --context to predict one configuration")
        p = model.predict(args.batch, args.context)
        line = (f"batch {args.batch}, {args.context} tokens of context: {p.peak_gb:.2f} GB ({p.low:.2f}-{p.high:.2f}; "
                f"KV cache {p.terms['KV cache (from the config)']:.2f} GB)")
        if args.context > reach:
            line += (f" [the KV cache is exact; the rest is extrapolated along a line beyond the measured "
                     f"{reach} tokens]")
        print(f"{line}; {p.verdict(memory)}" if memory else line)
        return 0 if memory is None or p.high <= memory else 1
    for line in model.describe():
        print(line)
    for point in out:
        p = model.predict(point.batch_size, point.context)
        print(f"held out {point.label}: measured {point.peak_gb:.3f} GB, predicted {p.peak_gb:.3f} "
              f"({p.low:.3f}-{p.high:.3f}), error {(p.peak_gb / point.peak_gb - 1) * 100:+.1f}%")
    if args.table:
        sizes = (memory,) if memory else TABLE_SIZES_GB
        print(f"largest batch (prediction interval's upper end within the memory), by context "
              f"(measured up to {reach} tokens; beyond, all but the KV cache is extrapolated)")
        print("context " + "  ".join(f"{s:>5g} GB" for s in sizes))
        for context in CONTEXTS:
            print(f"{context:<7} " + "  ".join(f"{model.largest_batch_text(context, s):>8}" for s in sizes))
    return 0


def cmd_crosscheck(args: argparse.Namespace) -> int:
    from bench.fidelity.crosscheck import crosscheck, setup_for_run
    from bench.report import render_run
    from bench.report.fidelity_table import fidelity_headline, fidelity_rows

    run = Path(args.run)
    records, stopped = crosscheck(run, setup_for_run(run, args.gpu), args.repeats,
                                  lambda line: print(line, file=sys.stderr))
    if stopped:
        print(stopped, file=sys.stderr)
    render_run(run)
    print(fidelity_headline(fidelity_rows(records)))
    print(run / "report.html")
    return 0


NO_TESTS_COLLECTED = 5  # pytest's exit code for a shard that got no case (more shards than groups)
RESERVED_BY_CLUSTER = ("--gpu", "--shard", "--report-dir", "--run-id", "-n", "--workers-per-gpu", "--each-gpu")


def cmd_cluster_run(args: argparse.Namespace) -> int:
    from bench.commands.cluster import cluster_run

    pytest_args = args.pytest_args
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
    from bench.analysis.baselines import load_baseline
    from bench.analysis.compare import Rules, baseline_of_run, compare
    from bench.records.results import read_results

    base, new = read_results(Path(args.base)), read_results(Path(args.new))
    baseline = load_baseline(args.baseline) if args.baseline else baseline_of_run(Path(args.base))
    result = compare(base, new, Rules.of(parse_threshold(args.threshold), baseline))
    _emit(result, args.base, args.new, args.format, args.all)
    return 1 if result.failed else 0


def _emit(result, base: str, new: str, fmt: str, all_rows: bool = False, sides=None) -> None:
    """Print a comparison in the chosen format, and append its markdown to a CI job summary."""
    import os

    from bench.report.comparison import to_json, to_markdown, to_table

    render = {"table": lambda: to_table(result, base, new, all_rows),
              "markdown": lambda: to_markdown(result, base, new, sides),
              "json": lambda: to_json(result, base, new, sides)}[fmt]
    print(render())
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as fh:
            fh.write(to_markdown(result, base, new, sides) + "\n")


def cmd_ab(args: argparse.Namespace) -> int:
    import time

    from bench.analysis.baselines import load_baseline
    from bench.analysis.compare import Rules, look, look_points
    from bench.commands.ab import max_rounds_of, remove_worktrees, run_ab
    from bench.commands.environments import sides_of
    from bench.report.comparison import to_json, to_markdown

    refs = _refs(args)
    pytest_args = args.pytest_args or ["suites/"]
    out = (Path(args.report_dir) / (args.run_id or time.strftime("%Y%m%d-%H%M%S-ab"))).resolve()
    if out.exists() and any(out.iterdir()):
        raise BenchError(f"{out} exists and is not empty; choose another --run-id")
    # A baseline's [thresholds] absorb the drift between two separate runs; paired rounds measure that
    # drift instead, so they apply here only when a baseline is named.
    baseline = load_baseline(args.baseline) if args.baseline else None
    rules = Rules.of(parse_threshold(args.threshold), baseline)
    points = look_points(args.rounds, max_rounds_of(args.rounds, args.max_rounds))
    echo = lambda line: print(line, file=sys.stderr)  # noqa: E731
    environments = _environments(args, echo)
    try:
        a, b = run_ab(refs, pytest_args, out, args.rounds, looks=points,
                      enough=lambda a, b: look(a, b, rules, len(points))[1], echo=echo,
                      pythons={label: env.python for label, env in environments.items()})
    finally:
        if not args.keep_worktrees:
            remove_worktrees(out)
    result = look(a, b, rules, len(points))[0]
    sides = sides_of(refs, environments, Path.cwd())
    names = [f"{ref} + {env.spec.label}" if env.spec.builds or env.spec.interpreter else ref
             for ref, env in zip(refs, environments.values())]
    (out / "ab.md").write_text(to_markdown(result, *names, sides), encoding="utf-8")
    (out / "ab.json").write_text(to_json(result, *names, sides), encoding="utf-8")
    _emit(result, *names, args.format, args.all, sides)
    print(out, file=sys.stderr)
    return 1 if result.failed else 0


def cmd_bisect(args: argparse.Namespace) -> int:
    import time

    from bench.analysis.baselines import load_baseline
    from bench.analysis.compare import Rules
    from bench.commands.bisect import GIT, Bisector, bisect, commits_between, versions_between, write

    out = (Path(args.report_dir) / (args.run_id or time.strftime("%Y%m%d-%H%M%S-bisect"))).resolve()
    if out.exists() and any(out.iterdir()):
        raise BenchError(f"{out} exists and is not empty; choose another --run-id")
    versions = (commits_between(args.good, args.bad, Path.cwd()) if args.package == GIT
                else versions_between(args.package, args.good, args.bad, args.find_links))
    rules = Rules.of(parse_threshold(args.threshold), load_baseline(args.baseline) if args.baseline else None)
    bisector = Bisector(args.package, args.pytest_args or ["suites/"], out, args.rounds, args.max_rounds, rules,
                        args.find_links, lambda line: print(line, file=sys.stderr))
    found = bisect(bisector, versions, args.metric, args.case)
    write(found, out)
    print(found.summary)
    print(out / "bisect.md")
    return 0


def _refs(args: argparse.Namespace) -> tuple[str, str]:
    """The two git refs: both given, or none where the sides differ by environment (the working tree)."""
    if args.ref_a and args.ref_b:
        return args.ref_a, args.ref_b
    if args.ref_a or not (args.env_a or args.env_b):
        raise BenchError("give two git refs (bench ab origin/main HEAD), or environments with --a/--b "
                         "(bench ab --a 'unsloth==2026.10.9' --b 'unsloth==2026.11.1')")
    return ".", "."


def _environments(args: argparse.Namespace, echo) -> dict:
    """Each side's environment, built (once, with uv) where it is pins or a requirements file."""
    from bench.commands.environments import parse_side, prepare
    from bench.models.store import cache_root

    return {label: prepare(parse_side(text), cache_root(), args.find_links, echo)
            for label, text in (("A", args.env_a), ("B", args.env_b))}


def build_parser() -> argparse.ArgumentParser:
    from bench import __version__

    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--version", action="version", version=f"gpt-oss-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("report", help="render a run's report.html, a comparison page of several runs, or a history")
    p.add_argument("runs", nargs="+", help="run directories (one: its report; several: side by side)")
    p.add_argument("-o", "--output", help="output HTML file")
    p.add_argument("--history", action="store_true", help="RUNS is one directory of many runs: metrics over time")
    p.add_argument("--threshold", default=THRESHOLD_DEFAULT, help="smallest change that counts on a comparison page")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("site", help="a static site of every run: trends per metric and case, change points over "
                                    "each whole series, comparisons of their two sides, changes.json")
    p.add_argument("runs", nargs="+", help="run directories, or directories holding runs")
    p.add_argument("-o", "--output", required=True, help="the site's directory (an existing site is brought up to date)")
    p.add_argument("--threshold", default=THRESHOLD_DEFAULT, help="smallest change a comparison calls (default %(default)s)")
    p.set_defaults(func=cmd_site)

    p = sub.add_parser("baseline", help="baseline files")
    bsub = p.add_subparsers(dest="baseline_command", required=True)
    p = bsub.add_parser("save", help="freeze runs (their values and between-run spread) into a baseline file")
    p.add_argument("runs", nargs="+", help="run directories of one configuration; several give limits from their spread")
    p.add_argument("--name", required=True, help="the baseline's name (file baselines/NAME.toml)")
    p.add_argument("--dir", default=None, help="where to write it (default: $BENCH_BASELINE_DIR, else ./baselines)")
    p.add_argument("--tolerance", default=None,
                   help="least slack of each limit (default: 30%% from one run, 5%% from several; noise may widen it)")
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

    p = sub.add_parser("fit", help="will it fit: the memory model fitted to runs' training (or, --infer, generation) "
                                   "peaks; a configuration's predicted peak with its interval, or the largest batch")
    p.add_argument("runs", nargs="+", help="run directories with training cases (the fit profile has 16) or, "
                                           "for --infer, generation cases")
    p.add_argument("--rank", type=int, help="LoRA rank to predict for")
    p.add_argument("--batch", type=int, help="per-device batch size (training) or sequences (--infer) to predict for")
    p.add_argument("--seq", type=int, help="sequence length (tokens) to predict for")
    p.add_argument("--infer", action="store_true",
                   help="the inference model instead: peak by batch and context, the KV cache from the config")
    p.add_argument("--context", type=int, help="with --infer: tokens of context per sequence (prompt and output)")
    p.add_argument("--gpu-memory", help="the GPU's memory, e.g. 24GB")
    p.add_argument("--gpu", help="a GPU by name (RTX 4090, A100 80GB, H100, ...) for its memory")
    p.add_argument("--table", action="store_true",
                   help="the largest batch per rank and length (with --infer, per context) on 16-80 GB GPUs")
    p.add_argument("--hold-out", type=int, default=0, metavar="N",
                   help="fit on all but N points spread over the set and say how far each held-out one is predicted")
    p.set_defaults(func=cmd_fit)

    from bench.fidelity.crosscheck import DEFAULT_REPEATS

    p = sub.add_parser("crosscheck", help="a run's headline figures against a plain script's on this host, "
                                          "interleaved: ratios with 95%% intervals, added to the run and its report")
    p.add_argument("run", help="the run directory")
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                   help="repeats of (plain script, harness) (default %(default)s)")
    p.add_argument("--gpu", help="the GPU to run on, as nvidia-smi numbers it, or cpu (default: the run's)")
    p.set_defaults(func=cmd_crosscheck)

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
    p.set_defaults(func=cmd_cluster_run, takes_pytest_args=True)

    p = sub.add_parser("compare", help="compare two runs; exit 1 when a metric regressed beyond noise")
    p.add_argument("base", help="the reference run directory or results.jsonl")
    p.add_argument("new", help="the run to judge")
    p.add_argument("--threshold", default=THRESHOLD_DEFAULT, help="smallest change that counts (default %(default)s)")
    p.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    p.add_argument("--baseline", help="a baseline whose [thresholds] set per-metric thresholds "
                                      "(default: the one the base run was checked against)")
    p.add_argument("--all", action="store_true", help="list unchanged metrics and diagnostics too (table format)")
    p.set_defaults(func=cmd_compare)

    from bench.commands.ab import DEFAULT_ROUNDS, MAX_ROUNDS_FACTOR

    p = sub.add_parser("ab", help="run two git refs' suites in alternating rounds here and compare them paired; "
                                  "exit 1 on a regression (the recommended CI gate)")
    p.add_argument("ref_a", nargs="?", help="the reference version: a branch, tag or commit (. is the working tree; "
                                            "default with --a/--b: the working tree for both)")
    p.add_argument("ref_b", nargs="?", help="the version to judge")
    p.add_argument("--a", dest="env_a", metavar="ENV",
                   help="side A's environment: pins ('unsloth==2026.10.9', comma-separated), a requirements .txt "
                        "or a venv's bin/python (default: this environment); built once with uv over a copy of "
                        "this one and kept")
    p.add_argument("--b", dest="env_b", metavar="ENV", help="side B's environment, as --a")
    p.add_argument("--find-links", action="append", metavar="DIR",
                   help="a wheelhouse uv may install from (repeatable; pip's PIP_FIND_LINKS is passed on too)")
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                   help=f"rounds of A and B before the first look, and between looks (default {DEFAULT_ROUNDS})")
    p.add_argument("--max-rounds", type=int, default=None,
                   help="rounds at most: more are run, --rounds at a time, while the rounds so far point at a "
                        f"regression they cannot call (default {MAX_ROUNDS_FACTOR} x --rounds; equal to --rounds: "
                        "exactly that many)")
    p.add_argument("--threshold", default=THRESHOLD_DEFAULT, help="smallest change that counts (default %(default)s)")
    p.add_argument("--baseline", help="a baseline whose [thresholds] and [gates] apply (default: none; --threshold for all)")
    p.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    p.add_argument("--all", action="store_true", help="list unchanged metrics and diagnostics too (table format)")
    p.add_argument("--report-dir", default="reports", help="where the rounds' runs go (default reports/)")
    p.add_argument("--run-id", help="name of the directory holding the rounds (default: time-ab)")
    p.add_argument("--keep-worktrees", action="store_true", help="leave the refs' worktrees in the run directory")
    p.set_defaults(func=cmd_ab, takes_pytest_args=True)

    p = sub.add_parser("bisect", help="the first version of a package (or commit, PACKAGE .) where a figure regressed, "
                                      "by bench ab at each step")
    p.add_argument("package", help="a package name (its versions as the index lists them), or . for this checkout's commits")
    p.add_argument("good", help="a version (or commit) without the regression")
    p.add_argument("bad", help="a later version (or commit) with it")
    p.add_argument("--metric", help="the metric to follow (default: the worst gating regression from GOOD to BAD)")
    p.add_argument("--case", help="the case to follow, as the reports name it (e.g. 'batch_size=1, effort=low')")
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="rounds of each comparison (default %(default)s)")
    p.add_argument("--max-rounds", type=int, default=None, help="rounds at most per comparison, as bench ab's")
    p.add_argument("--threshold", default=THRESHOLD_DEFAULT, help="smallest change that counts (default %(default)s)")
    p.add_argument("--baseline", help="a baseline whose [thresholds] and [gates] apply")
    p.add_argument("--find-links", action="append", metavar="DIR", help="a wheelhouse of the package's versions")
    p.add_argument("--report-dir", default="reports", help="where the comparisons go (default reports/)")
    p.add_argument("--run-id", help="name of the bisection's directory (default: time-bisect)")
    p.set_defaults(func=cmd_bisect, takes_pytest_args=True)

    from bench.commands.errorrate import add_arguments

    p = sub.add_parser("errorrate", help="measure how often the gate is wrong here: A/A false alarms and "
                                         "detection of injected slowdowns, for bench compare and bench ab")
    add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after `--` is pytest's (bench ab, errorrate, cluster run), options of ours go before it.
    split = argv.index("--") if "--" in argv else len(argv)
    argv, pytest_args = argv[:split], argv[split + 1:]
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's usage errors exit 2, as bad input should
        return int(exc.code or 0)
    if pytest_args and not getattr(args, "takes_pytest_args", False):
        print(f"bench {args.command}: takes no pytest arguments (after --)", file=sys.stderr)
        return 2
    args.pytest_args = pytest_args
    try:
        return args.func(args)
    except BenchError as exc:
        print(f"bench {args.command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path given that cannot be read or written: what to fix, not a traceback
        if exc.filename is None:
            raise
        print(f"bench {args.command}: {exc.filename}: {exc.strerror}; check the path and its permissions", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
