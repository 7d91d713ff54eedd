"""Checks of what a user typed, each a one-line error that says what to fix, made before anything
runs: engine lists, a run to compare with, a run directory that would be written over, a report
directory that cannot be written."""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

from bench.backends import PRECISIONS
from bench.analysis.baselines import Baseline, find_default, load_baseline, search_path, unmatched_checks
from bench.errors import BenchError
from bench.models import ModelSource
from bench.records.profiles import Profile, grid
from bench.records.results import MANIFEST_FILE, RESULTS_FILE, Measurement, read_results


def backend_names(spec: str) -> list[str]:
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names or len(set(names)) != len(names):
        raise BenchError(f"--backend {spec}: name each engine once, e.g. --backend unsloth or --backend hf,unsloth")
    return names


def read_compare(spec: str) -> list[Measurement]:
    path = Path(spec)
    if not path.exists():
        raise BenchError(f"--compare {spec}: no such run directory or results file")
    try:
        return read_results(path)
    except BenchError as exc:
        raise BenchError(f"--compare {spec}: {exc}") from None


def new_run_id(model_slug: str, hardware: str) -> str:
    hw = re.sub(r"[^A-Za-z0-9]+", "-", hardware.replace("NVIDIA ", "")).strip("-").lower()
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{model_slug}-{hw}"


def refuse_a_finished_run(path: Path, run_id: str) -> None:
    """A new run writing into another's directory would append its records to the other's: two runs
    read back as one (seen when a bench errorrate chain was written over an older one)."""
    if (path / RESULTS_FILE).is_file() or (path / MANIFEST_FILE).is_file():
        raise BenchError(f"--run-id {run_id}: {path} already holds a run; choose another --run-id, remove that "
                         f"directory, or continue that run with --resume {path}")


def writable_dir(path: Path) -> Path:
    """Checked by writing a file of this process's own: several workers check one directory at once."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise BenchError(f"--report-dir {path}: cannot write there ({exc.strerror}); "
                         "pass a writable directory with --report-dir") from None
    return path.resolve()


def pick_baseline(options, source: ModelSource, hardware: str, profile: Profile, engines: list[str],
              servers: tuple[str, ...]) -> tuple[Baseline | None, bool]:
    """--baseline, or the default for the model and GPU; a check that would match no case of the run
    is an error before anything runs, never a silent pass. Also: whether its hardware is this run's."""
    search = search_path(options.baseline_dir)
    if options.baseline:
        baseline, matches = load_baseline(options.baseline, search), True
        if baseline.profile and baseline.profile != profile.name:
            raise BenchError(f"baseline {baseline.path} was frozen from a --profile {baseline.profile} run; "
                             f"run that profile or pass another --baseline")
    else:
        baseline, matches = find_default(source.spec, hardware, search, profile.name)
    if baseline is not None:
        cases = [c for name in engines for c in grid(profile, source.spec, name, servers)]
        # a serving check of a server this run does not start (a baseline frozen against another
        # --endpoint) is not loose: it does not apply to this run
        loose = [c for c in unmatched_checks(baseline, cases)
                 if str(c.where.get("server", servers[0])) in servers]
        if loose:
            raise BenchError(f"baseline {baseline.path}: check '{loose[0].describe()}' matches no case of "
                             f"profile {profile.name}; fix its 'where' or choose another --profile")
    return baseline, matches


CROSSCHECK_MODES = ("auto", "on", "off")


def check_values(options) -> None:
    """Option values that can be wrong on their own, whatever else the run is."""
    if options.max_time is not None and options.max_time < 0:
        raise BenchError(f"--max-time {options.max_time:g}: give seconds >= 0 (0: fixed rounds)")
    if options.crosscheck not in CROSSCHECK_MODES:
        raise BenchError(f"--crosscheck {options.crosscheck}: choose one of {', '.join(CROSSCHECK_MODES)}")
    if options.crosscheck_repeats < 1:
        raise BenchError(f"--crosscheck-repeats {options.crosscheck_repeats}: give 1 or more "
                         "(3 or more for a 95% interval)")
    if options.precision not in PRECISIONS:
        raise BenchError(f"--precision {options.precision}: choose one of {', '.join(PRECISIONS)}")


def probe_endpoints(options) -> dict:
    """--endpoint's servers, asked what they serve before anything runs (the controller of
    several workers asks too: a dead endpoint is one line, not a failed case per worker)."""
    if not options.endpoint:
        return {}
    from bench.serving.endpoint import api_key, parse_endpoints, probe
    from bench.telemetry import environment

    key = api_key(options.endpoint_key_env)
    if key:
        environment.add_secret(key)  # whatever its variable is called, it is redacted everywhere
    return {name: probe(name, url, key, options.endpoint_model) for name, url in parse_endpoints(options.endpoint)}
