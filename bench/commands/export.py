"""A run in pytest-benchmark's JSON format, so tools that read it (the GitHub benchmark action,
Bencher, pytest-benchmark compare) ingest our runs without glue.

Only time-valued metrics become benchmarks (pytest-benchmark's stats are durations in seconds);
throughput and memory travel in each benchmark's extra_info.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from bench import __version__
from bench.analysis.runs import describe_params, load_run
from bench.analysis.stats import summarize

TIME_UNITS = {"s": 1.0, "ms": 1e-3}


def _stats(values: list[float]) -> dict:
    s = summarize(values)
    iqr = s.q3 - s.q1
    return {"min": s.min, "max": s.max, "mean": s.mean, "stddev": s.stdev, "rounds": s.n, "median": s.median,
            "iqr": iqr, "q1": s.q1, "q3": s.q3, "iqr_outliers": sum(1 for v in values if v < s.q1 - 1.5 * iqr or v > s.q3 + 1.5 * iqr),
            "stddev_outliers": sum(1 for v in values if abs(v - s.mean) > s.stdev) if s.n > 1 else 0,
            "outliers": "0;0", "ld15iqr": s.min, "hd15iqr": s.max, "ops": 1 / s.mean if s.mean else 0.0,
            "total": sum(values), "data": values, "iterations": 1}


def to_pytest_benchmark(run_dir: Path) -> dict:
    run = load_run(run_dir)
    m = run.manifest
    by_case: dict[str, dict] = {}
    for r in run.ok:
        key = r.test_id
        by_case.setdefault(key, {}).setdefault("extra", {})[r.metric] = r.value
    benchmarks = []
    for r in run.ok:
        if r.unit not in TIME_UNITS:
            continue
        scale = TIME_UNITS[r.unit]
        values = [v * scale for v in (r.samples or [r.value])]
        name = r.test_id.rsplit("::", 1)[-1]
        benchmarks.append({
            "group": r.suite, "name": f"{name}::{r.metric}", "fullname": f"{r.test_id}::{r.metric}",
            "params": r.params, "param": describe_params(r.params),
            "extra_info": {"metric": r.metric, "unit": r.unit, "better": r.better, **by_case[r.test_id]["extra"]},
            "options": {"disable_gc": False, "timer": "perf_counter (device synchronized)", "min_rounds": len(values),
                        "max_time": 0, "min_time": 0, "warmup": True},
            "stats": _stats(values)})
    gpu = m.gpus[0] if m.gpus else {}
    return {
        "machine_info": {"node": m.hostname_sha256, "processor": m.environment.get("host", {}).get("processor", ""),
                         "machine": m.environment.get("host", {}).get("machine", ""),
                         "python_version": m.versions.get("python"), "gpu": gpu.get("name", "cpu"),
                         "gpu_driver": gpu.get("driver")},
        "commit_info": {"id": m.git_commit, "dirty": None, "project": "gpt-oss-bench"},
        "benchmarks": benchmarks,
        "datetime": dt.datetime.fromtimestamp(m.started, dt.timezone.utc).isoformat(),
        "version": f"gpt-oss-bench {__version__} (pytest-benchmark format)",
    }

