"""Pages over several runs: side by side (environment differences, checks, ratio charts with
confidence intervals against the first run) and a history (each metric over time, change points
over the whole series marked, so a slow drift shows as steps and not only a single jump)."""

from __future__ import annotations

from pathlib import Path

from markupsafe import Markup

from bench.analysis.compare import Rules, baseline_of_run, compare
from bench.analysis.runs import RunData, checks_table, load_run
from bench.analysis.history import against_previous, groups, series_of
from bench.analysis.stats import DEFAULT_THRESHOLD
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
    """The runs under `root` of their most common group (GPU, model, engine, profile): a history
    mixes no configurations (`bench site` draws every group)."""
    run_dirs = sorted(p.parent for p in Path(root).glob("*/manifest.json"))
    by_group = groups([load_run(d) for d in run_dirs])
    group, runs = max(by_group.items(), key=lambda item: len(item[1]), default=(None, []))
    if len(runs) < 2:
        raise BenchError(f"{root}: a history needs two or more runs with results of one model, engine, GPU "
                         "and profile (directories with manifest.json)")
    series = series_of(group, runs, metrics)
    xlabels = [_run_label(r) for r in runs]
    figures, drifts = [], []
    for metric in metrics:
        drawn = [s for s in series if s.metric == metric]
        # a metric measured by several suites (peak memory) is drawn suite by suite, never mixed in a panel
        several = len({s.suite for s in drawn}) > 1
        values, steps, panels = {}, {}, {}
        for s in drawn:
            case = f"{s.suite}: {s.case}" if several else s.case
            by_run = {p.run: p.value for p in s.points}
            values[case], panels[case] = [by_run.get(i) for i in range(len(runs))], s.suite
            steps[case] = [cp.index for cp in s.changes]
            drifts += [{"metric": metric, "case": case, "at": cp.index, "before": cp.before, "after": cp.after,
                        "run": runs[s.points[cp.index].run].manifest.run_id} for cp in s.changes]
        unit = METRICS[metric].unit
        svg = charts.history_chart(xlabels, values, steps, f"{metric} ({unit})" if unit else metric, panels)
        if svg:
            figures.append((metric, Markup(svg)))
    return {"csp": CSP, "runs": runs, "group": group, "xlabels": xlabels, "figures": figures, "drifts": drifts,
            "verdicts": list(zip(runs, against_previous(runs, threshold))),
            "left_out": sum(len(r) for g, r in by_group.items() if g != group)}


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
