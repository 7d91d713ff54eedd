"""A `Comparison` as every view shows it: a terminal table, markdown (pull-request comments and CI
job summaries), JSON, JUnit properties, and the rows and ratio charts of the HTML pages. Each view
renders the same rows with the same counts; none computes a verdict of its own."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from markupsafe import Markup

from bench.analysis.compare import Comparison, MetricChange, describe
from bench.records.results import describe_params
from bench.records.metrics import METRICS
from bench.report import charts
from bench.report.page import environment
from bench.report.terminal import text_table

MARK = {"regression": "REGRESSION", "improvement": "improvement", "unchanged": "unchanged", "inconclusive": "inconclusive"}
VERDICTS = ("regression", "improvement", "inconclusive", "unchanged")


def ratio_figures(changes: list[MetricChange], metrics: tuple[str, ...], title: Callable[[str], str],
                  label: Callable[[MetricChange], str] | None = None) -> list[tuple[str, Markup]]:
    """One chart per metric: each case's new/base ratio with the interval its verdict used."""
    label = label or (lambda c: f"{c.suite}: {describe_params(c.params)}")
    figures = []
    for metric in metrics:
        picked = [c for c in changes if c.metric == metric and not c.estimate.single]
        svg = charts.ratio_chart([label(c) for c in picked], [c.estimate.ratio for c in picked],
                                 [c.low for c in picked], [c.high for c in picked],
                                 [c.threshold for c in picked], [c.verdict for c in picked], METRICS[metric].better)
        if svg:
            figures.append((title(metric), Markup(svg)))  # matplotlib's SVG of numbers
    return figures


def interval_text(c: MetricChange) -> str:
    if c.estimate.single:
        what = "single reading" if c.estimate.n_base < 2 else "no spread"
        return what + (f", tolerance {c.threshold:.0%}" if c.threshold is not None else ", not judged")
    quiet = f"; quiet host, threshold {c.threshold:.0%}" if c.quiet_host else ""
    return f"{c.low:.3f} to {c.high:.3f} ({confidence_text(c.confidence)}{quiet})"


def confidence_text(confidence: float) -> str:
    """An interval's confidence with the digits it needs not to read as 100%: Holm's level over
    tens of pairs, split among a sequential comparison's looks, leaves tails of 0.02%."""
    digits = 1
    while digits < 6 and round(confidence * 100, digits) >= 100:
        digits += 1
    return f"{confidence * 100:.{digits}f}%"


def change_row(c: MetricChange) -> dict:
    """One (case, metric) as every view shows it: the estimator's base and new statistics, its
    ratio and the interval the verdict was judged on."""
    est = c.estimate
    return {"suite": c.suite, "case": describe_params(c.params), "metric": c.metric, "unit": c.unit,
            "better": c.better, "gates": c.gates, "base": est.base, "new": est.new, "ratio": est.ratio,
            "change_pct": c.change_pct, "ci_low": c.low, "ci_high": c.high, "confidence": c.confidence,
            "interval": interval_text(c), "method": est.method, "n_base": est.n_base, "n_new": est.n_new,
            "threshold": c.threshold, "quiet_host": c.quiet_host, "verdict": c.verdict, "note": c.note}


def _params_text(key: tuple) -> str:
    return ", ".join(f"{k}={v}" for k, v in key[2])


def _missing(keys: list[tuple]) -> list[str]:
    return [f"{key[0]} {key[1]} [{_params_text(key)}]" for key in keys]


def _missing_grouped(keys: list[tuple], listed: int = 2) -> list[str]:
    """Measurements of one run only, one entry per (suite, metric): a run of 15 inference cases
    against a training-only run reads as "infer decode_tok_s: 15 cases", not as 15 entries."""
    by_metric: dict[tuple[str, str], list[str]] = {}
    for key in keys:
        by_metric.setdefault((key[0], key[1]), []).append(_params_text(key) or "the run")
    return [f"{suite} {metric}: " + (" / ".join(cases) if len(cases) <= listed else f"{len(cases)} cases")
            for (suite, metric), cases in by_metric.items()]


def headline(cmp: Comparison) -> str:
    """The one sentence every view leads with."""
    g, d = cmp.counts(), cmp.counts(gating=False)
    verdict = "FAILED" if cmp.failed else "passed"
    return (f"{verdict}: {g['regression']} regressions, {g['improvement']} improvements, "
            f"{g['inconclusive']} inconclusive, {g['unchanged']} unchanged in {len(cmp.gating)} gating pairs; "
            f"{len(cmp.diagnostics)} diagnostics ({d['regression']} worse, {d['improvement']} better, never gating)")


def method_text(cmp: Comparison) -> str:
    together, cases = cmp.all_cases_pairs, cmp.interval_pairs - cmp.all_cases_pairs
    if together and cases:
        levels = (f"each interval at the level Holm's step-down gives it within its family ({cases} per-case "
                  f"pairs, {together} all-cases pairs, {cmp.alpha / 2:.1%} each)")
    else:
        levels = f"each interval at the level Holm's step-down gives it over the {cmp.interval_pairs} gating pairs with intervals"
    rule = "a gating change is called when its whole interval lies beyond the threshold"
    if cmp.paired:
        rule += (" (an all-cases pair: when its interval excludes no change and its estimate lies beyond the "
                 "threshold, the rounds' pairing having removed the drift)")
    quiet = sum(c.quiet_host for c in cmp.gating)
    if quiet:
        rule += (f"; {quiet} of the {len(cmp.gating)} gating pairs ran on a quiet host in both runs and take the "
                 "baseline's [quiet] thresholds")
    if cmp.looks > 1:
        levels += (f", {cmp.alpha:.2%} in all at this look, one of {cmp.looks} planned (more rounds are run only "
                   "while an all-cases pair points at a regression it cannot call yet)")
    return (f"{cmp.method}; {rule}, "
            f"{levels}, so a whole run raises a false regression at most {cmp.alpha * cmp.looks:.0%} of the time; "
            "single readings are judged by their stated tolerance")


@dataclass(frozen=True)
class Version:
    """What one side of a paired comparison ran: its git ref and commit, and its environment."""

    label: str  # "A" or "B"
    ref: str
    commit: str | None  # None: the working tree as it was
    environment: str  # "this environment", the pins, a requirements file or an interpreter


@dataclass(frozen=True)
class Versions:
    """The two sides, and the packages they resolved to different versions."""

    a: Version
    b: Version
    packages: tuple[tuple[str, str | None, str | None], ...] = ()  # (package, version in A, in B), where they differ

    def as_dict(self) -> dict:
        return {"a": self.a.__dict__, "b": self.b.__dict__,
                "packages": [{"package": p, "a": va, "b": vb} for p, va, vb in self.packages]}


def to_json(cmp: Comparison, base: str, new: str, sides: Versions | None = None) -> str:
    data = {"schema": 2, "base": base, "new": new, "failed": cmp.failed, "method": method_text(cmp),
            "counts": cmp.counts(), "diagnostic_counts": cmp.counts(gating=False),
            "changes": [change_row(c) for c in cmp.changes],
            "only_in_base": _missing(cmp.only_base), "only_in_new": _missing(cmp.only_new)}
    if sides is not None:
        data["sides"] = sides.as_dict()
    return json.dumps(data, indent=2)


def to_markdown(cmp: Comparison, base: str, new: str, sides: Versions | None = None) -> str:
    rows = [change_row(c) for c in cmp.changes]
    return environment().get_template("compare.md.j2").render(
        cmp=cmp, base=base, new=new, sides=sides, headline=headline(cmp), method=method_text(cmp), counts=cmp.counts(),
        gating=[r for r in rows if r["gates"] and r["verdict"] != "unchanged"],
        diagnostics=[r for r in rows if not r["gates"] and r["verdict"] in ("regression", "improvement")],
        mark=MARK, only_base=_missing_grouped(cmp.only_base), only_new=_missing_grouped(cmp.only_new))


def to_table(cmp: Comparison, base: str, new: str, all_rows: bool = False) -> str:
    """Gating changes that matter (every pair with `all_rows`), then the counts, the answer last."""
    shown = [c for c in cmp.changes if all_rows or (c.gates and c.verdict != "unchanged")]
    rows = [("verdict", "suite", "case", "metric", "base", "new", "change", "interval of the ratio")]
    for c in shown:
        verdict = MARK[c.verdict] + ("" if c.gates else " (diagnostic)")
        rows.append((verdict, c.suite, describe_params(c.params), c.metric, f"{c.base:.4g}",
                     f"{c.new:.4g} {c.unit}".strip(), f"{c.change_pct:+.1f}%", interval_text(c)))
    lines = [f"base: {base}", f"new:  {new}", "", *(text_table(rows, 60) if len(rows) > 1 else []), ""]
    lines += [f"note: {c.suite} {c.metric} [{describe_params(c.params)}]: {c.note}" for c in shown if c.note]
    for label, keys in (("only in base", cmp.only_base), ("only in new", cmp.only_new)):
        if keys:
            grouped = _missing_grouped(keys)
            lines.append(f"{label} ({len(keys)} measurements): " + " | ".join(grouped[:12])
                         + (f" | ... {len(grouped) - 12} more metrics" if len(grouped) > 12 else ""))
    lines += [method_text(cmp), headline(cmp)]
    return "\n".join(lines)


def junit_properties(cmp: Comparison) -> list[tuple[str, str]]:
    """Suite-level JUnit properties: the same counts as every other view, and each regression."""
    counts = cmp.counts()
    props = [("comparison", "failed" if cmp.failed else "passed")]
    props += [(f"comparison_{v}", str(counts[v])) for v in VERDICTS]
    props += [("regression", describe(c, describe_params)) for c in cmp.regressions]
    return props
