"""A comparison of two runs as a terminal table, markdown (pull-request comments) or JSON."""

from __future__ import annotations

import json
from collections.abc import Callable

from markupsafe import Markup

from bench.analysis.compare import Comparison, MetricChange
from bench.records.metrics import METRICS
from bench.report import charts
from bench.analysis.runs import describe_params
from bench.report.page import environment
from bench.report.terminal import text_table

MARK = {"regression": "REGRESSION", "improvement": "improvement", "unchanged": "", "inconclusive": "inconclusive"}


def ratio_figures(changes: list[MetricChange], metrics: tuple[str, ...], threshold: float,
                  title: Callable[[str], str]) -> list[tuple[str, Markup]]:
    """One chart per metric: each case's new/base ratio with its interval; `title(metric)` names it."""
    figures = []
    for metric in metrics:
        picked = [c for c in changes if c.metric == metric]
        svg = charts.ratio_chart([f"{c.suite}: {describe_params(c.params)}" for c in picked],
                                 [c.estimate.ratio for c in picked], [c.estimate.low for c in picked],
                                 [c.estimate.high for c in picked], threshold, METRICS[metric].better)
        if svg:
            figures.append((title(metric), Markup(svg)))  # matplotlib's SVG of numbers
    return figures


def change_row(c: MetricChange) -> dict:
    return {"suite": c.suite, "case": describe_params(c.params), "metric": c.metric, "unit": c.unit,
            "better": c.better, "base": c.base, "new": c.new, "ratio": c.estimate.ratio,
            "ci_low": c.estimate.low, "ci_high": c.estimate.high, "method": c.estimate.method,
            "n_base": c.estimate.n_base, "n_new": c.estimate.n_new, "threshold": c.threshold, "verdict": c.verdict}


def _missing(keys: list[tuple]) -> list[str]:
    return [f"{suite} {metric} [{', '.join(f'{k}={v}' for k, v in params)}]" for suite, metric, params in keys]


def to_json(cmp: Comparison, base: str, new: str) -> str:
    return json.dumps({"schema": 1, "base": base, "new": new, "counts": cmp.counts(),
                       "changes": [change_row(c) for c in cmp.changes],
                       "only_in_base": _missing(cmp.only_base), "only_in_new": _missing(cmp.only_new)}, indent=2)


def to_markdown(cmp: Comparison, base: str, new: str) -> str:
    return environment().get_template("compare.md.j2").render(
        cmp=cmp, base=base, new=new, rows=[change_row(c) for c in cmp.changes], mark=MARK,
        only_base=_missing(cmp.only_base), only_new=_missing(cmp.only_new))


def to_table(cmp: Comparison, base: str, new: str, all_rows: bool = False) -> str:
    """The changes that matter (all with `all_rows`), then the counts and what is missing."""
    shown = [c for c in cmp.changes if all_rows or c.verdict != "unchanged"]
    rows = [("verdict", "suite", "case", "metric", "base", "new", "change", "95% CI of ratio")]
    for c in shown:
        rows.append((MARK[c.verdict] or "unchanged", c.suite, describe_params(c.params), c.metric,
                     f"{c.base:.4g}", f"{c.new:.4g} {c.unit}".strip(), f"{c.change_pct:+.1f}%",
                     f"{c.estimate.low:.3f}-{c.estimate.high:.3f}"))
    lines = [f"base: {base}", f"new:  {new}", "", *text_table(rows, 44)]
    counts = ", ".join(f"{v} {k}" for k, v in sorted(cmp.counts().items()))
    lines += ["", f"{len(cmp.changes)} compared: {counts or 'nothing in common'}"]
    for label, keys in (("only in base", cmp.only_base), ("only in new", cmp.only_new)):
        if keys:
            lines.append(f"{label} ({len(keys)}): " + "; ".join(_missing(keys)[:20])
                         + (" ..." if len(keys) > 20 else ""))
    return "\n".join(lines)
