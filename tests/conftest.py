"""Shared fixtures of the harness's own tests: small fabricated runs, no GPU, no network."""

from __future__ import annotations

import inspect
import json
import os
import re
from pathlib import Path

import pytest

from bench.records.results import Measurement, ResultsWriter, RunManifest

REPO = Path(__file__).resolve().parent.parent
# What starts a process: a test that does (itself or through a fixture) is slow by construction and
# is marked so, which keeps `pytest tests/ -m "not slow"` a fast loop.
STARTS_A_PROCESS = re.compile(r"\b(subprocess\.(run|Popen|check_output|check_call)|run_pytest\(|start_python\()")


def _starts_a_process(item: pytest.Item) -> bool:
    functions = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for name in (info.names_closure if info else ()):
        defs = info.name2fixturedefs.get(name) or ()
        functions += [d.func for d in defs if getattr(d, "baseid", "").startswith("tests")]
    for function in functions:
        try:
            if function is not None and STARTS_A_PROCESS.search(inspect.getsource(function)):
                return True
        except (OSError, TypeError):
            continue
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") is None and _starts_a_process(item):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def _plain_subprocess_runs():
    """Under `-n 2` this process is an xdist worker; the pytest runs the tests start must not think
    they are too (pytest-benchmark switches itself off when it sees PYTEST_XDIST_WORKER)."""
    for name in [n for n in os.environ if n.startswith("PYTEST_XDIST_")]:
        del os.environ[name]
    yield


@pytest.fixture(scope="session", autouse=True)
def _model_cache(tmp_path_factory):
    """Build the tiny model once per test session, in BENCH_CACHE_DIR when CI sets it."""
    if not os.environ.get("BENCH_CACHE_DIR"):
        os.environ["BENCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("bench-cache"))
    yield


def make_record(metric: str, value: float | None, samples=None, run_id="run-a", suite=None, status="ok",
                extra=None, error=None, **params) -> Measurement:
    from bench.records.metrics import METRICS

    spec = METRICS[metric]
    suite = suite or spec.suites[0]
    return Measurement(run_id=run_id, test_id=f"suites/test_{suite}.py::case[{metric}]", suite=suite, metric=metric,
                       value=value, unit=spec.unit, better=spec.better, samples=list(samples or []),
                       params=params, model="tiny-gpt-oss", backend="hf", status=status, extra=extra or {},
                       error=error)


def write_run(root: Path, run_id: str, records: list[Measurement], baseline: str | None = None,
              model: str = "tiny-gpt-oss", **manifest_fields) -> Path:
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    defaults = {"started": 1_760_000_000.0, "command": ["pytest", "suites/"], "profile": "quick", "backend": "hf",
                "device": "cpu", "status": "complete", "versions": {"python": "3.11", "torch": "2.13.0"}}
    manifest = RunManifest(run_id=run_id, model=model, baseline=baseline, **(defaults | manifest_fields))
    manifest.write(run_dir)
    writer = ResultsWriter(run_dir / "results.jsonl")
    for r in records:
        writer.write(r)
    writer.close()
    return run_dir


@pytest.fixture
def run_factory(tmp_path):
    def make(run_id: str, records: list[Measurement], **kw) -> Path:
        return write_run(tmp_path, run_id, records, **kw)

    return make


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
