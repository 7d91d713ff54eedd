"""Resuming a run that was killed: which cases finished, and a results file holding only them.

A case is finished once its closing records are on disk: the memory peaks written when its call
ends (also when it raised) or a `case` record for one that failed, was skipped or timed out. A
case the process died inside has neither; its partial records are dropped and it runs again, so
the resumed run holds every case exactly once.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.errors import BenchError
from bench.records.metrics import named
from bench.records.results import RESULTS_FILE, Measurement, RunManifest, read_results

CLOSING_METRICS = frozenset(named("closes_case"))


def check_resume(spec: str, settings: dict[str, str]) -> Path:
    """The run directory to continue, refused when it was made with other settings (option: value)."""
    path = Path(spec)
    try:
        manifest = RunManifest.read(path)
    except BenchError as exc:
        raise BenchError(f"--resume {spec}: {exc}") from None
    theirs = {"--model": manifest.model, "--profile": manifest.profile, "--backend": manifest.backend}
    for option, mine in settings.items():
        if mine != theirs[option]:
            raise BenchError(f"--resume {spec}: that run used {option} {theirs[option]}, this one {mine}; "
                             f"pass {option} {theirs[option]} to resume it")
    return path.resolve()


def finished_cases(records: list[Measurement]) -> set[str]:
    return {r.test_id for r in records if r.metric in CLOSING_METRICS}


def keep_finished(run_dir: Path) -> set[str]:
    """Rewrite the run's results with the finished cases' records only (atomically); their ids."""
    path = Path(run_dir) / RESULTS_FILE
    records = read_results(path) if path.is_file() else []
    done = finished_cases(records)
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in records:
            if r.test_id in done:
                fh.write(r.to_json() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    return done
