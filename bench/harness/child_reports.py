"""The hooks of an isolated child's pytest session: its reports and one-off costs go to a file the
parent replays them from (`bench.harness.isolate`)."""

from __future__ import annotations

import pytest

from bench.harness.isolate import write_report, write_timings


class ChildReports:
    """Hooks of an isolated child: its pytest reports and one-off costs go to a file the parent
    replays them from."""

    def __init__(self, path: str, timings: dict[str, float]) -> None:
        self.path, self.timings = path, timings

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        write_report(self.path, report)

    def pytest_sessionfinish(self) -> None:
        write_timings(self.path, self.timings)
