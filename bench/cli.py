"""`bench report | compare | doctor | baseline | merge`: working with runs outside a test session."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.errors import BenchError


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import render_run

    if len(args.runs) == 1 and not args.output:
        html, md = render_run(Path(args.runs[0]))
        print(html)
        return 0
    raise BenchError("comparing several runs in one page is not built yet; give one run directory")


def parse_threshold(text: str) -> float:
    """'5%' or '0.05' -> 0.05."""
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise BenchError(f"--threshold {text}: give a percentage like 5% or a fraction like 0.05") from None
    if not 0 <= value < 10:
        raise BenchError(f"--threshold {text}: out of range")
    return value


def cmd_compare(args: argparse.Namespace) -> int:
    import os

    from bench.baselines import load_baseline
    from bench.compare import compare
    from bench.report.comparison import to_json, to_markdown, to_table
    from bench.results import read_results

    base, new = read_results(Path(args.base)), read_results(Path(args.new))
    overrides = load_baseline(args.baseline).thresholds if args.baseline else None
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
    p = sub.add_parser("report", help="render a run's report.html (or a comparison page of several runs)")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("-o", "--output", help="output HTML file")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="compare two runs; exit 1 when a metric regressed beyond noise")
    p.add_argument("base", help="the reference run directory or results.jsonl")
    p.add_argument("new", help="the run to judge")
    p.add_argument("--threshold", default="5%", help="smallest change that counts (default 5%%)")
    p.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    p.add_argument("--baseline", help="a baseline file whose [thresholds] override the threshold per metric")
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
