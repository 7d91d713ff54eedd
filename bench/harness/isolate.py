"""`--isolate`: each suite case in its own Python process, so a crash (a segfault, a CUDA error
that poisons the context, an abort) costs that case and nothing else.

The parent collects and orders the cases and owns the run directory; each case runs as
`python -m pytest NODEID --bench-worker-run RUN_DIR ...` (spawned, not forked: a forked child
cannot use a CUDA context its parent made), appending its records to the run's results file. The
parent then reports the child's outcome under the case's own test id; a child that died without
saying why gets a `case` record naming the signal or exit code.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from bench.telemetry.environment import redact
from bench.records.results import RESULTS_FILE, Measurement, read_results

TAIL_CHARS = 3000


@dataclass(frozen=True)
class ChildResult:
    outcome: str  # "passed" | "failed" | "skipped"
    returncode: int
    output: str
    duration: float
    records: list[Measurement]


def pytest_command(nodeids: list[str], options) -> list[str]:
    """A child pytest running some cases of this session with its settings (isolated cases, a
    confirming re-measurement). The parent compares and judges; the child only measures."""
    cmd = [sys.executable, "-m", "pytest", *nodeids, "-q", "-rfEs", "-p", "no:cacheprovider",
           "--model", options.model, "--backend", options.backend, "--profile", options.profile,
           "--dataset", options.dataset, "--precision", options.precision]
    if options.gpu:
        cmd += ["--gpu", options.gpu]
    if options.baseline:
        cmd += ["--baseline", options.baseline]
    if options.baseline_dir:
        cmd += ["--baseline-dir", options.baseline_dir]
    return cmd


def child_command(nodeid: str, run_dir: str, options, case_timeout: float | None = None) -> list[str]:
    cmd = pytest_command([nodeid], options) + ["--bench-worker-run", run_dir]
    if case_timeout:
        cmd += ["--timeout", str(case_timeout)]
    return cmd


def run_case(nodeid: str, run_dir, options, case_timeout: float | None = None) -> ChildResult:
    """Run one case in a child; with a time limit the child enforces it (status timeout) and the
    parent kills a child that outlives it by a minute (a hang in a driver call, say)."""
    before = {(r.test_id, r.metric) for r in read_results(run_dir)} if (run_dir / RESULTS_FILE).is_file() else set()
    started = time.perf_counter()
    try:
        proc = subprocess.run(child_command(nodeid, str(run_dir), options, case_timeout), capture_output=True,
                              text=True, timeout=case_timeout + 60 if case_timeout else None)
        code, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, output = -signal.SIGKILL, f"Timeout >{case_timeout}s: the isolated case was killed\n{exc.stdout or ''}"
    records = [r for r in read_results(run_dir) if r.test_id == nodeid and (r.test_id, r.metric) not in before]
    skipped = any(r.metric == "case" and r.status == "skipped" for r in records)
    outcome = ("skipped" if skipped else "passed") if code == 0 else "failed"
    return ChildResult(outcome, code, redact(output[-TAIL_CHARS:]), time.perf_counter() - started, records)


def death_reason(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the isolated case's process died with {name}"
    return f"the isolated case's process exited with code {code}"
