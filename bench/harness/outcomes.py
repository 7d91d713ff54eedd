"""How a case that did not finish normally is recorded: failed, oom, timeout or skipped.

A case whose metrics were written and only missed a baseline check is not re-recorded: its
measurements already say what happened. Everything else gets one `case` record with the reason,
so a run's results say what did not run, and why, instead of being silently shorter.
"""

from __future__ import annotations

import pytest

from bench.harness.case import Case

MAX_ERROR_CHARS = 2000


def classify(excinfo: pytest.ExceptionInfo | None) -> str:
    if excinfo is None:
        return "failed"
    exc = excinfo.value
    name = type(exc).__name__
    if name == "OutOfMemoryError" or "out of memory" in str(exc).lower():
        return "oom"
    if "Timeout" in name or str(exc).startswith("Timeout"):  # pytest-timeout fails with "Timeout >Ns"
        return "timeout"
    return "failed"


def record_outcome(case: Case, report: pytest.TestReport, call: pytest.CallInfo) -> None:
    if report.passed or case.closed:
        return
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        status, error = "skipped", reason.removeprefix("Skipped: ")
    elif report.when == "call" and case.judged:
        return  # measured, then failed on a check or a regression: the records say it all
    else:
        status = classify(call.excinfo)
        error = call.excinfo.exconly() if call.excinfo is not None else str(report.longrepr)
    case.close(status, error[:MAX_ERROR_CHARS])
