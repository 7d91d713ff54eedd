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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("report", help="render a run's report.html (or a comparison page of several runs)")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("-o", "--output", help="output HTML file")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BenchError as exc:
        print(f"bench {args.command}: {exc}", file=sys.stderr)
        return 2
