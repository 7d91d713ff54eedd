"""How a process takes part in a run: the mode is chosen once, when the session is set up, and
decides who makes the run directory, who owns the manifest and the report, and what a finished
process leaves behind.

- `NewRun`: one process, its own run directory, manifest, calibration and report (the usual case).
- `ResumedRun`: a killed run continued in its own directory (`--resume`), its finished cases kept.
- `ControllerRun`: the process that hands cases to pytest-xdist workers and never touches CUDA; at
  the end it folds the workers' records and facts into the run it owns.
- `WorkerRun`: an xdist worker pinned to one GPU and engine: appends to the controller's run and
  leaves a part file with its own facts (GPU, timings, calibration, what it held after its turn).
- `IsolatedCaseRun`: the child process of one `--isolate` case: appends, owns nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.harness import workers
from bench.analysis.time_budget import STARTUP_TIMING, WALL_TIMING
from bench.harness.resume import keep_finished
from bench.records.metrics import SUITES
from bench.records.results import RESULTS_FILE, ResultsWriter, RunManifest, read_results
from bench.telemetry import environment, failpoints


class BenchSession(Protocol):
    """What a run mode reads of the session that owns it (`bench.harness.session`), and the
    session's methods it calls; declared here so that the two modules do not import each other."""

    options: Any
    argv: list[str]
    profile: Any
    source: Any
    plan: Any
    device: str
    gpu: Any
    gpu_indices: list[int] | None
    hardware: str
    backend_name: str
    baseline: Any
    baseline_hardware_matches: bool
    price_per_hour: float | None
    workload: Any
    run_dir: Path | None
    planned_dir: Path
    resume_dir: Path | None
    manifest: RunManifest | None
    timings: dict[str, float]
    calibration: dict
    left_out: str | None
    left_on_device_gb: float | None
    first_child_fresh: bool

    def wait_for_engine(self) -> None: ...
    def calibrate(self, say: Any = None) -> dict: ...
    def calibrate_meanwhile(self) -> None: ...
    def adopt_workers(self, records: list, left_out: str | None, timings: dict[str, float]) -> None: ...
    def finish_run(self, interrupted: bool) -> None: ...


def add_wall_time(timings: dict, name: str) -> None:
    """Seconds since this process started, added to what earlier parts of a resumed run spent."""
    timings[name] = round(timings.get(name, 0.0) + time.time() - environment.process_started(), 3)


@dataclass
class Opened:
    """What a mode set up for the run; the session takes it as its own (`BenchSession.start`) and
    then calls the mode's `note`, which writes what this process owns of it."""

    run_dir: Path
    writer: ResultsWriter
    manifest: RunManifest | None = None
    timings: dict[str, float] | None = None  # the run's timings, where they replace this process's
    finished: set[str] = field(default_factory=set)  # cases of a resumed run that need not run again
    calibration: dict | None = None  # a worker's GPU ceilings, for its part file


class NewRun:
    owns_run = True

    def open(self, s: BenchSession) -> Opened:
        run_dir = s.planned_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        timings = dict(s.timings)
        add_wall_time(timings, STARTUP_TIMING)
        s.wait_for_engine()
        manifest = new_manifest(s, run_dir, timings)
        if s.left_out:
            manifest.notes.append(s.left_out)
        if s.first_child_fresh:  # measured while the first isolated child imports
            s.calibrate_meanwhile()
        else:
            manifest.calibration = s.calibrate()
        return Opened(run_dir, ResultsWriter(run_dir / RESULTS_FILE), manifest, timings)

    def note(self, s: BenchSession) -> None:
        if s.manifest is not None:
            s.manifest.write(s.run_dir)

    def close(self, s: BenchSession, interrupted: bool) -> None:
        s.finish_run(interrupted)


class ResumedRun(NewRun):
    def open(self, s: BenchSession) -> Opened:
        """The killed run's own directory: same manifest, its finished cases kept."""
        run_dir = s.resume_dir
        manifest = RunManifest.read(run_dir)
        finished = keep_finished(run_dir)
        timings = manifest.timings
        if manifest.finished is None and WALL_TIMING not in timings:
            # its first part was killed before it could close: it lasted at least to its last record
            last = max((r.time for r in read_results(run_dir)), default=None) \
                if (run_dir / RESULTS_FILE).is_file() else None
            if last is not None:
                timings[WALL_TIMING] = round(timings.get(STARTUP_TIMING, 0.0) + last - manifest.started, 3)
        manifest.status = "incomplete"
        manifest.notes.append(f"resumed at {time.strftime('%Y-%m-%d %H:%M:%S')} with "
                              f"{len(finished)} cases already finished")
        timings.update(s.timings)
        add_wall_time(timings, STARTUP_TIMING)
        s.wait_for_engine()
        return Opened(run_dir, ResultsWriter(run_dir / RESULTS_FILE), manifest, timings, finished)


class ControllerRun(NewRun):
    def close(self, s: BenchSession, interrupted: bool) -> None:
        """What the workers wrote: their records (for the summary and --compare), their GPUs'
        calibration, their run-level timings and what the profile left out, folded into the
        manifest; then the run's end."""
        parts = workers.read_parts(s.run_dir)
        workers.fold_parts(s.manifest, parts)
        # every worker collected the same cases, and this process none
        left_out = next((p["left_out"] for p in parts if p.get("left_out")), None)
        if left_out and left_out not in s.manifest.notes:
            s.manifest.notes.append(left_out)
        records = read_results(s.run_dir) if (s.run_dir / RESULTS_FILE).is_file() else []
        s.adopt_workers(sorted(records, key=lambda r: (SUITES.index(r.suite) if r.suite in SUITES else 99, r.time)),
                        left_out, s.manifest.timings)
        s.finish_run(interrupted)


class WorkerRun:
    owns_run = False

    def open(self, s: BenchSession) -> Opened:
        run_dir = Path(s.options.worker_run)
        run_dir.mkdir(parents=True, exist_ok=True)  # the controller writes the manifest when it sees it
        writer = ResultsWriter(run_dir / RESULTS_FILE)
        s.wait_for_engine()
        return Opened(run_dir, writer, calibration=s.calibrate())

    def note(self, s: BenchSession) -> None:
        self.write_part(s, ready=s.run_dir is not None)

    def close(self, s: BenchSession, interrupted: bool) -> None:
        self.write_part(s, ready=True)

    @staticmethod
    def write_part(s: BenchSession, ready: bool) -> None:
        workers.write_part(s.run_dir or Path(s.options.worker_run), s.options.worker_id, {
            "turn": s.options.turn, "backend": s.backend_name, "ready": ready,
            "gpu": environment.gpus(s.gpu_indices)[0] if s.gpu else None,
            "timings": s.timings, "calibration": s.calibration, "left_on_device_gb": s.left_on_device_gb,
            "left_out": s.left_out})


class IsolatedCaseRun:
    owns_run = False

    def open(self, s: BenchSession) -> Opened:
        run_dir = Path(s.options.worker_run)
        return Opened(run_dir, ResultsWriter(run_dir / RESULTS_FILE), RunManifest.read(run_dir))

    def note(self, s: BenchSession) -> None:
        pass  # the parent owns the manifest

    def close(self, s: BenchSession, interrupted: bool) -> None:
        pass


def mode_for(options, plan, resume_dir: Path | None):
    if options.worker_id:
        return WorkerRun()
    if options.worker_run:
        return IsolatedCaseRun()
    if resume_dir is not None:
        return ResumedRun()
    if plan is not None:
        return ControllerRun()
    return NewRun()


def new_manifest(s: BenchSession, run_dir: Path, timings: dict[str, float]) -> RunManifest:
    """The manifest of a run this process owns: what ran, where, and what to know when reading it."""
    m = RunManifest(
        run_id=run_dir.name, started=time.time(), command=s.argv, profile=s.profile.name,
        model=s.source.spec, backend=s.backend_name, device=s.device,
        git_commit=environment.git_commit(), hostname_sha256=environment.hostname_sha256(),
        gpus=environment.gpus(s.gpu_indices), versions=environment.versions(),
        environment={**environment.allowed_environment(), "host": environment.host()},
        baseline=str(s.baseline.path.resolve()) if s.baseline else None, timings=timings,
        gpu_price_per_hour=s.price_per_hour, test_hooks=failpoints.active(), options=s.workload.case_options)
    if m.test_hooks:
        m.notes.append("made with test-only hooks set (" + ", ".join(f"{k}={v}" for k, v in m.test_hooks.items())
                       + "): its figures are not a real measurement")
    if s.baseline and s.baseline.about:
        m.notes.append(f"baseline '{s.baseline.name}': {s.baseline.about}")
    if s.baseline and not s.baseline_hardware_matches:
        m.notes.append(f"baseline '{s.baseline.name}' was measured on {s.baseline.gpu}, "
                       f"not on {s.hardware}: its checks are applied as documented targets")
    if not s.source.loss_meaningful:
        m.notes.append(f"{s.source.spec}: {s.source.why_no_loss}")
    if s.plan is not None:
        m.notes.extend(workers.describe(s.plan))
        names = sorted({g["name"] for g in m.gpus})
        if s.plan.dist in workers.SPREADS and len(names) > 1:
            m.notes.append(f"the GPUs differ ({', '.join(names)}) and the cases were spread over them, "
                           "so no case ran on both: run with --each-gpu to compare them case by case")
    return m
