"""`--confirm`: a regression `--compare` suspects is measured again, in a fresh process, before it
may fail the run; only one found again does.

A single comparison of two runs can be fooled by what happened to one of them (a neighbour on the
machine, a slow process). Re-measuring the suspect cases only, with fresh rounds, costs a fraction
of the run and turns a one-off into an inconclusive verdict, with the re-measured figure beside it.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

from bench.analysis.compare import Comparison, Rules, compare
from bench.analysis.stats import INCONCLUSIVE
from bench.harness.isolate import pytest_command
from bench.records.results import RESULTS_FILE, Measurement, params_key, read_results

CONFIRM_RUN = "confirm"


def _key(suite: str, metric: str, params: dict) -> tuple:
    return (suite, metric, params_key(params))


def suspects(comparison: Comparison, records: list[Measurement]) -> list[str]:
    """The test ids of the cases whose regressions would fail the run."""
    keys = {_key(c.suite, c.metric, c.params) for c in comparison.regressions}
    return sorted({r.test_id for r in records if r.case_key() in keys})


def remeasure(test_ids: list[str], options, run_dir: Path) -> list[Measurement]:
    """The suspect cases run again into RUN/confirm (no comparison, no checks there)."""
    cmd = pytest_command(test_ids, options) + ["--report-dir", str(run_dir), "--run-id", CONFIRM_RUN]
    subprocess.run(cmd, capture_output=True, text=True)
    path = run_dir / CONFIRM_RUN
    return read_results(path) if (path / RESULTS_FILE).is_file() else []


def confirmed(first: Comparison, base: list[Measurement], again: list[Measurement], rules: Rules,
              by_lane: bool) -> Comparison:
    """The first comparison, with each regression kept only if the re-measurement regresses too."""
    second = compare(base, again, rules, by_lane)
    found = {_key(c.suite, c.metric, c.params): c for c in second.changes}
    changes = []
    for c in first.changes:
        if not c.failing:
            changes.append(c)
            continue
        check = found.get(_key(c.suite, c.metric, c.params))
        if check is not None and check.failing:
            changes.append(dataclasses.replace(c, note=f"confirmed: re-measured {check.change_pct:+.1f}%"))
        else:
            what = f"{check.change_pct:+.1f}%, {check.verdict}" if check is not None else "not measured again"
            changes.append(dataclasses.replace(c, verdict=INCONCLUSIVE, note=f"not confirmed: re-measured {what}"))
    return dataclasses.replace(first, changes=changes, method=first.method + ", regressions re-measured (--confirm)")
