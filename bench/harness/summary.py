"""The table printed at the end of a pytest session: every record, its check, the comparison."""

from __future__ import annotations

from bench.analysis.fidelity import FIDELITY_METRIC
from bench.analysis.runs import lane_by, lane_of
from bench.records.results import describe_params
from bench.analysis.time_budget import CASE_TIME_METRIC, time_budget
from bench.records.metrics import SUITES
from bench.harness.session import BenchSession
from bench.records.results import RESULTS_FILE, read_results
from bench.report.fidelity_table import fidelity_headline, fidelity_rows
from bench.report.terminal import text_table


def summary_lines(session: BenchSession) -> list[str]:
    rows = [("suite", "case", "metric", "value", "baseline", "result")]
    checked = {}
    for o in session.outcomes:
        checked.setdefault((o.test_id, o.check.metric), []).append(o)
    by = lane_by(session.records)
    for r in session.records:
        if r.metric in (CASE_TIME_METRIC, FIDELITY_METRIC):  # summed into the lines below
            continue
        outcomes = checked.get((r.test_id, r.metric), [])
        if r.status != "ok":  # the reason too: a skip or failure with no why is no answer
            reason = " ".join((r.error or "").split())
            value, limit, result = "", "", f"{r.status}: {reason[:88]}" if reason else r.status
        else:
            value = f"{r.value:.4g} {r.unit}".strip()
            limit = "; ".join(o.check.describe().removeprefix(r.metric + " ") for o in outcomes)
            result = ("FAIL" if any(not o.passed for o in outcomes) else "pass") if outcomes else ""
        case = describe_params(r.params) or r.test_id.rsplit("::", 1)[-1]
        if by:
            case = f"{lane_of(r, by)}: {case}"
        rows.append((r.suite, case, r.metric, value, limit, result))
    lines = text_table(rows, 96)  # whole case names
    failed = sum(1 for o in session.outcomes if not o.passed)
    lines.append("")
    lines.append(f"checks: {len(session.outcomes) - failed} passed, {failed} failed"
                 + (f" (baseline {session.baseline.path})" if session.baseline else "")
                 if session.outcomes else f"checks: NONE: {session.no_checks_reason}")
    if session.left_out:
        lines.append(f"not run: {session.left_out}")
    fidelity = fidelity_headline(fidelity_rows(session.records))
    if fidelity:
        lines.append(f"{fidelity} ({session.timings.get('crosscheck_s', 0):.0f} s, after the run)")
    if session.comparison is not None:
        from bench.analysis.compare import describe
        from bench.report.comparison import headline

        comparison = session.comparison
        lines.append("")
        lines += [f"  REGRESSION {describe(c, describe_params)}{(' ' + c.note) if c.note else ''}"
                  for c in comparison.regressions]
        lines += [f"  improvement {describe(c, describe_params)}" for c in comparison.improvements]
        lines.append(f"compared with {session.options.compare}: {headline(comparison)}")
    if session.manifest is not None and (session.run_dir / RESULTS_FILE).is_file():
        # the run's records, not this process's: a resumed run's wall time spans its earlier parts
        budget = time_budget(read_results(session.run_dir), session.timings, session.manifest.workers, SUITES)
        if budget is not None:
            lines.append(budget.headline())
    if session.run_dir is not None:
        lines.append(f"results: {session.run_dir / RESULTS_FILE}")
        if session.report_error:
            lines.append(f"report:  NOT RENDERED ({session.report_error}); the results are complete: "
                         f"`bench report {session.run_dir}` retries it")
        else:
            lines.append(f"report:  {session.run_dir / 'report.html'}")
    return lines
