"""Session-wide state of a suites run: validated options, the run directory, records and checks.

Everything a user can get wrong is checked in `BenchSession.__init__`, before collection, so bad
input is one line and a non-zero exit with no work done. The run directory is made only when
suite cases are actually collected (`start`), so `pytest tests/` leaves nothing behind.
"""

from __future__ import annotations

import multiprocessing.context
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bench.harness import run_modes, workers
from bench.harness.run_modes import add_wall_time
from bench.analysis.time_budget import ENGINE_IMPORT_TIMING, WALL_TIMING
from bench.telemetry import environment
from bench.backends import PRELOADABLE, resolve_backend_name
from bench.analysis.baselines import CheckOutcome, evaluate
from bench.telemetry.devices import free_memory_gb, nvml_gpus, parse_gpu_option, pin, torch_has_cuda
from bench.telemetry.processes import (fresh_context, last_line, preloading_context, start_python, wait_for_server,
                                       without_waiting)
from bench.errors import BenchError
from bench.records.profiles import get_profile, self_served
from bench.records.metrics import METRICS
from bench.models import ModelSource, resolve_model
from bench.analysis.prices import price_per_hour
from bench.harness.isolate import resolve_mode as resolve_isolation
from bench.harness.option_table import BenchOptions
from bench.harness.inputs import (backend_names, check_values, new_run_id, pick_baseline, probe_endpoints, read_compare,
                                  refuse_a_finished_run, writable_dir)
from bench.harness.workload import Workload
from bench.harness.resume import check_resume
from bench.records.results import Measurement, ResultsWriter, RunManifest
from bench.analysis.serving import DEFAULT_SLO, parse_slo
from bench.analysis.shared_gpu import shared_gpu_note
from bench.serving.endpoint import Endpoint


# What a correctness check may take on the GPU, from the run's training cases: NVML's count for the
# case's process where NVML can tell processes apart, else the device-wide peak (larger, so safer).
# The 20B replica's checks took 16.1-17.0 GB against the 15.9 GB of the training case before them.
BESIDE_ESTIMATES = ("nvml_process_peak_gb", "nvml_peak_used_gb")
BESIDE_MARGIN = 1.5


class BenchSession:
    def __init__(self, options: BenchOptions, argv: list[str] | None = None) -> None:
        self.options = options
        self.argv = environment.redact_argv(list(argv if argv is not None else sys.argv))
        self.profile = get_profile(options.profile)
        self.source = resolve_model(options.model)
        available = nvml_gpus()
        self.gpu_indices = parse_gpu_option(options.gpu, available)
        engines = backend_names(options.backend)
        tiny = self.source.kind == "tiny"
        self.plan = None if options.worker_run else workers.plan(
            self.gpu_indices, engines, options.workers_per_gpu, options.each_gpu, options.workers, options.dist)
        if self.plan is None:
            self.device = self._pick_device(options.gpu is not None)
            self.backend_names = [resolve_backend_name(engines[0], self.device != "cpu", tiny)]
        else:  # the controller of several workers: it never touches CUDA, each worker pins its GPU
            if options.resume:
                raise BenchError("--resume continues a run in one process; drop --gpu lists, --backend lists, "
                                 "--workers-per-gpu and -n")
            self.device = "cuda" if self.gpu_indices else "cpu"
            self.backend_names = [resolve_backend_name(e, self.device != "cpu", tiny) for e in engines]
            self.plan = workers.Plan([replace(s, backend=resolve_backend_name(s.backend, s.gpu is not None, tiny))
                                      for s in self.plan.slots], self.plan.dist)
        self.backend_name = ",".join(self.backend_names)
        self.gpu = next((g for g in available if self.device != "cpu" and g.index == self.gpu_indices[0]), None)
        self.hardware = self.gpu.name if self.gpu else ("cuda" if self.device != "cpu" else "cpu")
        self.endpoints: dict[str, Endpoint] = probe_endpoints(options)
        if options.servers is not None and self.endpoints:
            raise BenchError("--servers chooses the servers the harness starts, and with --endpoint it starts none: "
                             "drop one of them")
        self.servers = tuple(self.endpoints) or self_served(options.servers, self.profile)
        self.baseline, self.baseline_hardware_matches = pick_baseline(options, self.source, self.hardware, self.profile,
                                                                       self.backend_names, self.servers)
        self.slo = parse_slo(options.slo) if options.slo else dict(
            self.baseline.slo if self.baseline and self.baseline.slo else DEFAULT_SLO)
        if options.require_checks and self.baseline is None and not options.worker_run:
            raise BenchError(f"--require-checks: {self.no_checks_reason}; pass --baseline NAME_OR_FILE, or freeze "
                             "a run with `bench baseline save RUN --name NAME`")
        check_values(options)
        self.price_per_hour = price_per_hour(options.gpu_price_per_hour, self.hardware)
        self.report_root = writable_dir(Path(options.report_dir))
        if options.run_id and not (options.worker_run or options.resume):
            refuse_a_finished_run(self.report_root / options.run_id, options.run_id)
        self.compare_records = read_compare(options.compare) if options.compare else None
        self.resume_dir = check_resume(options.resume, {"--model": self.source.spec, "--profile": self.profile.name,
                                                        "--backend": self.backend_name}) if options.resume else None
        self.finished: set[str] = set()  # cases of a resumed run that need not run again
        self.workload = Workload(self.profile, self.source, self.backend_name, self.device, options)
        self.mode = run_modes.mode_for(options, self.plan, self.resume_dir)
        self.isolation = "off" if self.plan is not None else resolve_isolation(
            options.isolate, self.device, child=bool(options.worker_run and not options.worker_id))
        self.isolator = None  # the parent's runner of isolated groups, once cases are collected
        self.say: Callable[[str], None] = lambda line: None  # a progress line on the terminal (set by the plugin)
        self.run_dir: Path | None = None
        self._planned_dir: Path | None = None
        self.manifest: RunManifest | None = None
        self.writer: ResultsWriter | None = None
        self.records: list[Measurement] = []
        self.outcomes: list[CheckOutcome] = []
        self.timings: dict[str, float] = {}
        self.calibration: dict = {}
        self.report_error: str | None = None  # why report.html could not be rendered, if it could not
        self.left_on_device_gb: float | None = None  # NVML's count for this worker when its turn ended
        self.collected_suites: set[str] = set()
        self.left_out: str | None = None  # the profile's left-out suites, when a run had some collected
        # the run's first isolated child starts in a fresh interpreter (bench.harness.isolate's
        # `light`): the run need not wait for the fork server's import before it
        self.first_child_fresh = False
        # an isolated child told it runs beside another correctness check: why its device-wide figures are left out
        self.beside: str | None = None
        self.building_ahead = None  # the process `build_ahead` started
        self._calibrating = None  # `calibrate_meanwhile`'s measurement under way
        self.comparison = None  # the Comparison with the --compare run, made when the session ends

    # ---- validation -------------------------------------------------------------------------
    def _pick_device(self, explicit: bool) -> str:
        index = self.gpu_indices[0] if self.gpu_indices else None
        if index is None:
            return "cpu"
        if "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
            raise BenchError("--gpu: CUDA was initialized before the harness could pin the GPU; "
                             "do not touch CUDA in conftest.py or plugins loaded earlier")
        device = pin(index)
        if not torch_has_cuda():
            if explicit:
                from importlib.metadata import version

                raise BenchError(f"--gpu {self.options.gpu}: this torch build ({version('torch')}) has no CUDA; "
                                 "install a CUDA build of torch or drop --gpu")
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            self.gpu_indices = None
            return "cpu"
        return device

    @property
    def no_checks_reason(self) -> str:
        """Why nothing was checked, in the words the terminal, summary and report use."""
        where = "this CPU" if self.hardware == "cpu" else self.hardware
        if self.baseline is None:
            return f"no baseline matched {self.source.spec} on {where}: nothing was checked"
        return f"baseline '{self.baseline.name}' has no check for what this run measured: nothing was checked"

    # ---- what the suites run -------------------------------------------------------------------
    @property
    def run_gpus(self) -> list[int]:
        """Every GPU of the run, also in a worker pinned to one of them."""
        return list(self.options.run_gpus) if self.options.run_gpus else list(self.gpu_indices or [])

    def require_inputs(self, weights: bool = True) -> None:
        """What the cases would load, checked before the run starts so that a bad one is one line,
        not the same error in every case: a hub model the HF cache lacks (or holds broken) or a
        directory with no model in it (loading would download behind a timing; not with `weights`
        False), and a --dataset file that is not there or a hub dataset not cached."""
        from bench.data.loading import check_dataset

        check_dataset(self.options.dataset)
        if weights and self.source.kind in ("hub", "path"):
            from bench.models.cache_check import require_loadable

            try:
                require_loadable(self.source.spec)
            except BenchError as exc:
                raise BenchError(f"--model {self.options.model}: {exc}") from None

    # ---- the run ------------------------------------------------------------------------------
    def start(self) -> Path:
        """Open the run directory as this process's mode says; called once suite cases are collected."""
        if self.run_dir is None:
            opened = self.mode.open(self)
            self.run_dir, self.writer, self.manifest, self.finished = (opened.run_dir, opened.writer, opened.manifest,
                                                                       opened.finished)
            self.timings = self.timings if opened.timings is None else opened.timings
            self.calibration = self.calibration if opened.calibration is None else opened.calibration
            self.mode.note(self)
        return self.run_dir

    @property
    def planned_dir(self) -> Path:
        """Where this run's directory is (or will be): made by `start` once cases are collected."""
        if self._planned_dir is None:
            self._planned_dir = self.report_root / (self.options.run_id or new_run_id(self.source.slug, self.hardware))
        return self._planned_dir

    def wait_for_engine(self) -> None:
        """Isolated cases are forked from the fork server: wait here until it has imported the
        engine's libraries, so that the wait is recorded as the one-off import it is and neither the
        ceilings' measurement nor the first case's start is charged with it."""
        if self.isolation == "off" or self.plan is not None or self.first_child_fresh:
            return
        self.add_engine_import(wait_for_server(self.processes()))

    def add_engine_import(self, seconds: float) -> None:
        """The engine's import this run waited for, summed over a resumed run's parts."""
        self.timings[ENGINE_IMPORT_TIMING] = round(self.timings.get(ENGINE_IMPORT_TIMING, 0.0) + seconds, 4)

    def calibrate(self, say: Callable[[str], None] | None = None) -> dict:
        """This process's GPU's measured ceilings (cached per UUID and driver); none on the CPU or
        in a controller, which never touches CUDA. `say`: where a measurement is announced."""
        if self.gpu is None or self.plan is not None:
            return {}
        from bench.models.store import cache_root
        from bench.telemetry.calibration import cached

        # a parent of isolated children must hold no CUDA context of its own: it would count in
        # every child's NVML figures
        return cached(cache_root(), self.gpu.uuid, self.gpu.driver, self.device,
                      context=without_waiting(self.processes()) if self.isolation != "off" else None,
                      announce=say or self.say)

    def calibrate_meanwhile(self) -> None:
        """`calibrate` in a thread (the measuring itself runs in a child process of its own): on a
        fresh machine its few seconds then pass while the run's first isolated child imports, not
        before that child starts. `settle_calibration` waits for it before anything uses the GPU."""
        from bench.telemetry.calibration import Meanwhile

        self._calibrating = Meanwhile(self.calibrate)

    def settle_calibration(self) -> None:
        """Wait for `calibrate_meanwhile`'s measurement (at once when none is under way) and put it
        in the manifest. A failed measurement costs the efficiency figures, not the run."""
        if self._calibrating is None:
            return
        (result, said), self._calibrating = self._calibrating.result(), None
        for line in said:
            self.say(line)
        if isinstance(result, Exception):
            self.manifest.notes.append(f"the GPU's ceilings could not be measured, so no efficiency figures: {result}")
            self.say(self.manifest.notes[-1])
        elif result:
            self.manifest.calibration = result
        self.manifest.write(self.run_dir)

    def end_turn(self) -> None:
        """Before the next engine's turn: give back what this process's allocator caches, and say
        what NVML still counts against the process (the next engine's NVML figures include it)."""
        from bench.telemetry.devices import process_memory_gb
        from bench.telemetry.memory import release_garbage

        # pytest keeps the last failure's traceback for post-mortem debugging: its frames can hold a model
        sys.last_type = sys.last_value = sys.last_traceback = None
        if hasattr(sys, "last_exc"):
            sys.last_exc = None
        release_garbage(self.device)
        if self.gpu is not None:
            self.left_on_device_gb = process_memory_gb(self.gpu.index, os.getpid())
            self.mode.note(self)

    def processes(self) -> multiprocessing.context.BaseContext:
        """Where the processes this session starts come from (isolated cases, servers, the sides of
        the concurrency suite): a fork server that has imported the engine's libraries."""
        return preloading_context(PRELOADABLE.get(self.backend_name, ()))

    def ready_processes(self) -> multiprocessing.context.BaseContext:
        """`processes()` once its fork server has imported the engine (at once when it has). Without
        isolation nothing starts the server before the first case that needs it, and with light
        first children the run did not wait for it before its first case: a caller may wait here
        for that import (4.3 s on the 2-core CPU) and should file the wait as the one-off it is."""
        context = self.processes()
        wait_for_server(context)
        return context

    def prepare_safely(self, prepare: Callable[[ModelSource], str],
                       prepared: Callable[[ModelSource], bool] | None = None) -> str:
        """`prepare(source)`: a backend's `prepare` or `servable`, with any building done in a process
        of its own, so that this process then only finds the result on disk. A process that times
        a load must not build in itself: building imports the modules a user's first load imports,
        starts CUDA, and a replica's quantization loads the model, so the cold load after it was a
        second load (on an H100, 6.2 s where a process's first took 6.6-7.2 s). The parent of
        isolated children must not start CUDA (its context would sit in the device-wide figure of
        every later case). `prepared`: whether `prepare` would find everything on disk; without it,
        only the parent of isolated children on a GPU prepares in a child (the tiny model is built
        on the CPU there: no child)."""
        if prepared is not None:
            build_elsewhere = not prepared(self.source)
        else:
            build_elsewhere = self.isolation != "off" and self.device.startswith("cuda") and self.source.kind != "tiny"
        if build_elsewhere:
            log = self.start() / "prepare.log"
            # a measuring process builds in a fresh interpreter: a fork server of its own would import
            # the engine in a process that is itself a fork server's child
            context = self.processes() if self.isolation != "off" else fresh_context()
            process = start_python(context, prepare, (self.source,), log)
            process.join()
            said = last_line(log)
            if process.exitcode:
                raise BenchError(f"preparing {self.source.spec} failed in a child process (exit code "
                                 f"{process.exitcode}): {said} (log: {log})")
            if not said:
                log.unlink()  # found on disk: nothing to keep
        return prepare(self.source)

    def build_ahead(self) -> None:
        """Start, in a process of its own, what the isolated children's preparation will want (the
        bf16 copy a replica is quantized from), so that it is built while the first child imports
        its engine rather than after. Only a parent planning its children in order: one build."""
        if self.isolation == "off" or self.plan is not None or self.options.worker_id or self.gpu is None:
            return
        from bench.backends import get_backend

        ahead = get_backend(self.backend_name, self.device, **self.workload.backend_options).build_ahead(self.source)
        if ahead is None:
            return
        self.settle_calibration()  # the GPU's ceilings are never measured beside a build
        function, args = ahead
        self.building_ahead = start_python(self.processes(), function, args, self.start() / "build-ahead.log")

    def room_beside(self, checks: int) -> bool:
        """Whether this GPU has room now for `checks` correctness checks at once: each may take what
        the largest training case of this run took (NVML's count for its process), with half again
        as margin. No training case measured yet: no estimate, one at a time (a check beside
        another that ran out of memory would fail for the harness's sake)."""
        if self.gpu is None:
            return False
        trained = [r for r in self.records if r.suite == "train" and r.value is not None and r.gpu_uuid == self.gpu.uuid]
        peaks = next(([r.value for r in trained if r.metric == metric] for metric in BESIDE_ESTIMATES
                      if any(r.metric == metric for r in trained)), [])
        free = free_memory_gb(self.gpu.index) if peaks else None
        return free is not None and free >= checks * max(peaks) * BESIDE_MARGIN

    def note_timing(self, name: str, seconds: float) -> None:
        """Run-level costs paid once per process (library import, model build), for the report."""
        self.timings[name] = round(seconds, 4)
        self.mode.note(self)

    def recorder(self, test_id: str, suite: str, params: dict) -> Callable[..., tuple[Measurement, list[CheckOutcome]]]:
        """What a `Case` is given instead of the session: write one measurement of this case now
        (flushed to disk) and return it with the baseline's checks on it."""
        def record(metric: str, value: float | None, **fields) -> tuple[Measurement, list[CheckOutcome]]:
            measurement = self.measurement(test_id=test_id, suite=suite, metric=metric, value=value, params=params,
                                           **fields)
            self.start()
            self.writer.write(measurement)
            return measurement, self._count(measurement)

        return record

    def _count(self, record: Measurement) -> list[CheckOutcome]:
        """Keep a record for the summary and check it against the baseline."""
        self.records.append(record)
        outcomes = evaluate(self.baseline, record.__dict__)
        self.outcomes.extend(outcomes)
        return outcomes

    def measurement(self, *, test_id: str, suite: str, metric: str, value: float | None, params: dict,
                    samples: list[float] | None = None, status: str = "ok", error: str | None = None,
                    extra: dict | None = None) -> Measurement:
        spec = METRICS[metric]
        return Measurement(
            run_id=self.run_dir.name if self.run_dir else "", test_id=test_id, suite=suite, metric=metric,
            value=value, unit=spec.unit, better=spec.better, samples=list(samples or []),
            params=params, model=self.source.spec, backend=self.backend_name,
            gpu_index=self.gpu.index if self.gpu else None, gpu_name=self.gpu.name if self.gpu else None,
            gpu_uuid=self.gpu.uuid if self.gpu else None, status=status,
            error=environment.redact(error) if error else None, extra=extra or {})

    def compare(self) -> None:
        """This run against the --compare run: one comparison of the whole run, so that its
        false alarms are controlled over every gating pair at once (`bench.analysis.compare`)."""
        if self.compare_records is None:
            return
        from bench.analysis.compare import Rules, compare, mixes_lanes

        several = len(self.backend_names) > 1 or self.options.each_gpu
        by_lane = several or mixes_lanes(self.compare_records)
        rules = Rules.of(self.options.threshold, self.baseline)
        self.comparison = compare(self.compare_records, self.records, rules, by_lane)
        if self.options.confirm and self.comparison.failed and self.run_dir is not None:
            from bench.harness import confirm

            again = confirm.remeasure(confirm.suspects(self.comparison, self.records), self.options, self.run_dir)
            self.comparison = confirm.confirmed(self.comparison, self.compare_records, again, rules, by_lane)

    def adopt(self, records: list[Measurement]) -> None:
        """Records an isolated case's process wrote: counted here as if written here."""
        for record in records:
            self._count(record)

    def adopt_workers(self, records: list[Measurement], left_out: str | None, timings: dict[str, float]) -> None:
        """What the xdist workers wrote, for the run's end: their records, what their profile left
        out, and the run's timings with theirs folded in."""
        self.left_out, self.timings = left_out, timings
        self.adopt(records)

    def finish(self, interrupted: bool) -> None:
        if self.run_dir is None:
            return
        if self.building_ahead is not None:  # what no preparation took (a failed one, an interrupted run)
            from bench.models.replica import remove_built_ahead
            from bench.models.store import cache_root

            if self.building_ahead.exitcode is None:
                self.building_ahead.kill()
            self.building_ahead.join()
            remove_built_ahead(os.getpid(), cache_root())
        if self.isolator is not None:
            self.isolator.close()
            self.timings.update(self.isolator.timings)
            self.timings.update(self.isolator.cost())
            self.add_engine_import(self.isolator.engine_import_s)
            if self.manifest is not None:
                # this process's wall time, as the run's own (run_wall_s) counts it
                self.manifest.notes.append(self.isolator.describe(time.time() - environment.process_started()))
        self.writer.close()
        self.mode.close(self, interrupted)

    @property
    def crosschecks(self) -> bool:
        """Whether this run ends with the cross-check: asked for, or the profile's; one engine on one
        device, in the process that owns the run."""
        wanted = self.options.crosscheck == "on" or (self.options.crosscheck == "auto" and self.profile.crosscheck)
        return wanted and self.plan is None and len(self.backend_names) == 1 and self.options.worker_run is None

    def crosscheck(self) -> None:
        """The run's figures against a plain script's, interleaved (`bench.fidelity`): one that fails
        costs its own figures, said in the notes, never the run's."""
        from bench.fidelity.crosscheck import after_run

        self.manifest.write(self.run_dir)
        records, failure, self.timings["crosscheck_s"] = after_run(self.run_dir, self.options.crosscheck_repeats,
                                                                   self.say)
        self.records.extend(records)
        if failure:
            self.manifest.notes.append(failure)
            self.say(failure)

    def finish_run(self, interrupted: bool) -> None:
        """The end of a run this process owns: its manifest closed, cross-checked and compared, its
        report rendered."""
        self.settle_calibration()
        if not self.outcomes and self.records:
            self.manifest.notes.append(self.no_checks_reason)
        shared = shared_gpu_note(self.records)
        if shared:
            self.manifest.notes.append(shared)
            self.say(shared)
        add_wall_time(self.timings, WALL_TIMING)  # the run's own time: the cross-check's is its own line
        if self.crosschecks and not interrupted and self.records:
            self.crosscheck()
        self.compare()
        self.manifest.status = "incomplete" if interrupted else "complete"
        self.manifest.finished = time.time()
        self.manifest.write(self.run_dir)
        from bench.report import render_run

        try:
            render_run(self.run_dir)
        except Exception as exc:  # the measurements are on disk already; a report bug must not cost them
            self.report_error = f"{type(exc).__name__}: {exc}"
        if self.comparison is not None:
            from bench.report.comparison import to_json, to_markdown

            (self.run_dir / "comparison.md").write_text(
                to_markdown(self.comparison, self.options.compare, str(self.run_dir)), encoding="utf-8")
            (self.run_dir / "comparison.json").write_text(
                to_json(self.comparison, self.options.compare, str(self.run_dir)), encoding="utf-8")
