"""Pages over several runs: side by side (environment differences, checks, ratio charts with
confidence intervals against the first run) and a history (each metric over time, change points
marked, so a slow drift shows as steps and not only a single jump)."""

from __future__ import annotations

from pathlib import Path

from markupsafe import Markup

from bench.analysis.compare import Rules, baseline_of_run, compare
from bench.analysis.runs import RunData, checks_table, describe_params, load_run
from bench.analysis.stats import DEFAULT_THRESHOLD, change_points
from bench.errors import BenchError
from bench.records.metrics import METRICS, named
from bench.report import charts
from bench.report.comparison import change_row, headline, method_text, ratio_figures
from bench.report.page import CSP, environment


def _environment_rows(runs: list[RunData]) -> list[dict]:
    def facts(run: RunData) -> dict[str, str]:
        m = run.manifest
        gpu = m.gpus[0] if m.gpus else {}
        out = {"model": m.model, "backend": m.backend, "profile": m.profile, "device": m.device,
               "GPU": gpu.get("name", "CPU"), "driver": gpu.get("driver", ""), "git commit": (m.git_commit or "")[:12],
               "status": m.status}
        out.update({k: str(v) for k, v in m.versions.items() if v})
        return out

    table = [facts(r) for r in runs]
    keys = list(dict.fromkeys(k for t in table for k in t))
    return [{"name": k, "values": [t.get(k, "") for t in table], "differs": len({t.get(k, "") for t in table}) > 1}
            for k in keys]


def comparison_context(run_dirs: list[Path], threshold: float) -> dict:
    if len(run_dirs) < 2:
        raise BenchError("a comparison page needs two or more run directories")
    runs = [load_run(Path(d)) for d in run_dirs]
    first = runs[0]
    rules = Rules.of(threshold, baseline_of_run(first.run_dir))  # as `bench compare FIRST RUN` applies them
    comparisons = [(run, compare(first.records, run.records, rules)) for run in runs[1:]]
    figures = [figure for run, cmp in comparisons
               for figure in ratio_figures(cmp.changes, named("charted"),
                                           lambda metric: f"{metric}: {run.manifest.run_id} / {first.manifest.run_id}")]
    return {"csp": CSP, "runs": runs, "env": _environment_rows(runs), "threshold": threshold,
            "checks": [(run, checks_table(run)) for run in runs], "figures": figures,
            "comparisons": [(run, cmp, headline(cmp), method_text(cmp), [change_row(c) for c in cmp.changes])
                            for run, cmp in comparisons]}


def history_context(root: Path, metrics: tuple[str, ...] = named("charted"), threshold: float = DEFAULT_THRESHOLD) -> dict:
    run_dirs = sorted(p.parent for p in Path(root).glob("*/manifest.json"))
    runs = sorted((run for run in (load_run(d) for d in run_dirs) if run.ok), key=lambda r: r.manifest.started)
    if len(runs) < 2:
        raise BenchError(f"{root}: a history needs two or more runs with results (directories with manifest.json)")
    steps_between = [(run, compare(prev.records, run.records, Rules.of(threshold, baseline_of_run(prev.run_dir))))
                     for prev, run in zip(runs, runs[1:])]
    xlabels = [_run_label(r) for r in runs]
    figures, drifts = [], []
    for metric in metrics:
        # a metric measured by several suites (peak memory) is drawn suite by suite, never mixed in a panel
        keys = sorted({(r.suite, describe_params(r.params)) for run in runs for r in run.ok if r.metric == metric})
        several = len({suite for suite, _ in keys}) > 1
        series, steps, groups = {}, {}, {}
        for suite, params in keys:
            case = f"{suite}: {params}" if several else params
            values = [next((r.value for r in run.ok if r.metric == metric and r.suite == suite
                            and describe_params(r.params) == params), None) for run in runs]
            series[case], groups[case] = values, suite
            present = [v for v in values if v is not None]
            found = change_points(present) if len(present) >= 4 else []
            steps[case] = found
            for k in found:
                drifts.append({"metric": metric, "case": case, "at": k, "before": present[k - 1], "after": present[k]})
        unit = METRICS[metric].unit
        svg = charts.history_chart(xlabels, series, steps, f"{metric} ({unit})" if unit else metric, groups)
        if svg:
            figures.append((metric, Markup(svg)))
    return {"csp": CSP, "runs": runs, "xlabels": xlabels, "figures": figures, "drifts": drifts,
            "verdicts": [(run, cmp.counts(), cmp.failed) for run, cmp in steps_between]}


def _run_label(run: RunData) -> str:
    """A history's x label: the commit (or the run) and when it ran, so that runs of one commit
    stay distinct."""
    import datetime as dt

    when = dt.datetime.fromtimestamp(run.manifest.started).strftime("%m-%d %H:%M")
    return f"{(run.manifest.git_commit or run.manifest.run_id)[:8]} {when}"


def render_comparison(run_dirs: list[Path], output: Path, threshold: float = DEFAULT_THRESHOLD) -> Path:
    html = environment().get_template("multi.html.j2").render(comparison_context(run_dirs, threshold))
    output.write_text(html, encoding="utf-8")
    return output


def render_history(root: Path, output: Path, threshold: float = DEFAULT_THRESHOLD) -> Path:
    context = history_context(root, threshold=threshold)
    output.write_text(environment().get_template("history.html.j2").render(context), encoding="utf-8")
    return output
