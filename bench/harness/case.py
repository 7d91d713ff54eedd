"""One suite case: its parameters, the records it writes, the checks they meet, its telemetry.

The plugin creates a `Case` per test item and wraps the test call in `Case.tracking()`: a memory
tracker (torch's allocator peaks on CUDA), a background sampler (NVML on a GPU, psutil on the
CPU) and what the rest of the host did (`HostLoadTracker`) run around the whole call, and what
they saw becomes records of the case too.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator

from bench.analysis.baselines import CheckOutcome
from bench.analysis.time_budget import CASE_TIME_METRIC
from bench.records.results import Measurement
from bench.telemetry import MemoryTracker, sampler_for
from bench.telemetry.host_load import HostLoad, HostLoadTracker
from bench.telemetry.kernels import RoundProfile
from bench.telemetry.memory import release_garbage

SERIES_POINTS = 240  # time-series points kept per case for the report
CASE_METRIC = "case"  # the record of a case that did not finish normally


def case_params(callspec_params: dict) -> dict:
    """The record's params from pytest's: `train_batch=(2, 8)` becomes batch_size=2, grad_accum=8."""
    params = {}
    for key, value in callspec_params.items():
        if key == "train_batch":
            params["batch_size"], params["grad_accum"] = value
        elif key == "load":  # a serving load point: concurrency=N or request_rate="0.5x"
            params.update(value.params)
        else:
            params[key] = value
    return params


class Case:
    """What a suite test records through: its measurements, the checks they met, its telemetry.
    It gets the one callback it needs (`record`: write a measurement, return it with its check
    outcomes) and the device, never the session, so it cannot grow into a second session."""

    def __init__(self, test_id: str, suite: str, params: dict, device: str,
                 record: Callable[..., tuple[Measurement, list[CheckOutcome]]], beside: str | None = None) -> None:
        self._record = record
        self.device = device
        self.beside = beside  # why the GPU's and host's figures are not this case's own (a case ran beside it)
        self.test_id = test_id
        self.suite = suite
        self.params = params  # the same dict the recorder writes: a suite may add what it decides (placement)
        self.outcomes: list[CheckOutcome] = []
        self.records: list = []
        self.usage = None
        self.memory: MemoryTracker | None = None
        self.host: HostLoad | None = None
        self.closed = False  # a `case` record says how it ended (failed, skipped, oom, timeout)
        self.judged = False  # measured, then failed on its checks: its records say it all
        # the process whose memory the case's telemetry follows when it is not this one (a server
        # the serving suite started) and the GPU it runs on: then torch's allocator has nothing to say
        self.watched: tuple[int | None, str | None] | None = None
        self.timed_s = 0.0  # seconds spent inside the rounds whose samples were recorded
        self.phases: dict[str, float] = {}  # untimed work by name (`phase`), for the time record

    def __call__(self, metric: str, value: float | None, *, samples: list[float] | None = None,
                 status: str = "ok", error: str | None = None, extra: dict | None = None) -> None:
        """Write one measurement now (flushed to disk) and evaluate the baseline's checks on it."""
        record, outcomes = self._record(metric, value, samples=samples, status=status, error=error, extra=extra)
        self.records.append(record)
        self.outcomes.extend(outcomes)

    def timed(self, metric: str, samples: list[float], extra: dict | None = None) -> None:
        """A repeated measurement: the value is the median, every sample is kept."""
        self(metric, statistics.median(samples), samples=samples, extra=extra)

    def add_timed_work(self, seconds: float) -> None:
        """Seconds inside the rounds this case's figures come from (not warm-ups, loads or profiled
        rounds): the part of the run's wall time that measured something (`bench.analysis.time_budget`)."""
        self.timed_s += seconds

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Host wall time of a named piece of untimed work (a load, a trainer's set-up, the profiled
        round), summed by name into the case's time record: what its overhead is made of. Work the
        GPU still runs when the block ends counts in the next one."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add_phase(name, time.perf_counter() - started)

    @contextlib.contextmanager
    def training(self, name: str, step_seconds: list[float]) -> Iterator[None]:
        """A check's training in a fresh process: its first step (`step_seconds[0]`, a `StepClock`'s)
        carries the process's first-call compilation and is filed as the "warm-up step", a one-off
        cost as in the timed training case; the rest is filed under `name`."""
        seen = len(step_seconds)
        with self.phase(name):
            yield
        if len(step_seconds) > seen:
            self.add_phase("warm-up step", step_seconds[seen])
            self.phases[name] -= step_seconds[seen]

    def add_phase(self, name: str, seconds: float) -> None:
        """Untimed work timed elsewhere (a warm-up round its own clock measured)."""
        self.phases[name] = self.phases.get(name, 0.0) + seconds

    def record_time(self, setup_s: float, call_s: float) -> None:
        """Where the case's own time went: its fixtures' setup, its call, the timed rounds inside it,
        the named phases of its untimed work."""
        self(CASE_TIME_METRIC, setup_s + call_s,
             extra={"setup_s": round(setup_s, 4), "call_s": round(call_s, 4), "timed_s": round(self.timed_s, 4),
                    "phases": {name: round(seconds, 4) for name, seconds in self.phases.items()}})

    def close(self, status: str, error: str) -> None:
        """Record once how a case that did not finish normally ended."""
        if not self.closed:
            self.closed = True
            self(CASE_METRIC, None, status=status, error=error)

    def skip_metric(self, metric: str, reason: str) -> None:
        """A metric this case cannot measure meaningfully: recorded as skipped, with why."""
        self(metric, None, status="skipped", error=reason)

    def profiled(self, profile: RoundProfile | None, per: float, unit: str) -> None:
        """The profiled round's figures (`bench.telemetry.kernels`): GPU busy share, host launches
        per decode step (`per` = new tokens) or per optimizer step, and the top kernels."""
        if profile is None:
            return
        summary = profile.summary(per, unit)
        self("profiled_round_s", profile.wall_s, extra=summary)
        if profile.busy_fraction is not None:
            self("gpu_busy_pct", 100 * profile.busy_fraction)
        if summary[f"launches_per_{unit}"] is not None:
            self(f"launches_per_{unit}", summary[f"launches_per_{unit}"])

    @property
    def failures(self) -> list[str]:
        return [o.message for o in self.outcomes if not o.passed]

    def watch(self, pid: int | None, gpu_uuid: str | None) -> None:
        """Follow another process's memory (and the GPU's) instead of this one's; `pid` None: the
        GPU's only (the case's work runs in several processes), torch's allocator never asked."""
        self.watched = (pid, gpu_uuid)

    @contextlib.contextmanager
    def tracking(self) -> Iterator[None]:
        device = self.device
        if self.watched is not None:
            pid, uuid = self.watched
            sampler, memory = sampler_for(device, pid, uuid), MemoryTracker("cpu")
        else:
            release_garbage(device)
            sampler, memory = sampler_for(device), MemoryTracker(device)
        host = HostLoadTracker()
        try:
            with sampler, memory, host:
                yield
        finally:  # kept when the case raised too: an out-of-memory case reports the peak it reached
            self.usage, self.memory = sampler.usage, memory
            # the others' CPU beside a case whose work runs in other processes would be its own
            self.host = host.load if self.watched is None else None

    def record_usage(self) -> None:
        """Peaks of the whole case, each under its own name (torch's allocator, NVML, RSS), and the
        CPU the rest of the host used meanwhile."""
        memory, usage = self.memory, self.usage
        if memory is not None and memory.allocated_peak_gb is not None:
            # what was allocated when the case started (a model loaded by a module fixture, say)
            self("peak_vram_gb", memory.allocated_peak_gb, extra={"allocated_at_start_gb": memory.allocated_start_gb})
            self("peak_reserved_gb", memory.reserved_peak_gb)
        if self.host is not None:
            self._shared("others_cpu_cores", self.host.others_cores,
                         extra={"steal_pct": self.host.steal_pct, "cores": self.host.cores,
                                "wall_s": round(self.host.wall_s, 3)})
        if usage is None:
            return
        series = _downsample(usage.series, SERIES_POINTS)
        extra = {"usage": {**usage.as_dict(with_series=False), "series": series}}
        if usage.peak_memory_gb is not None:
            if usage.source == "nvml":
                self._shared("nvml_peak_used_gb", usage.peak_memory_gb, extra=extra)
            else:
                self("peak_rss_gb", usage.peak_memory_gb, extra=extra)
        if usage.process_peak_memory_gb is not None:
            self("nvml_process_peak_gb", usage.process_peak_memory_gb)
        if usage.source == "nvml" and usage.mean_util_pct is not None:
            self._shared("gpu_util_pct", usage.mean_util_pct)

    def _shared(self, metric: str, value: float, extra: dict | None = None) -> None:
        """A figure of the whole GPU or host: this case's own only when no case ran beside it."""
        if self.beside:
            self.skip_metric(metric, self.beside)
        else:
            self(metric, value, extra=extra)


def _downsample(series: list, points: int) -> list[list]:
    if len(series) <= points:
        return [list(row) for row in series]
    step = len(series) / points
    return [list(series[int(i * step)]) for i in range(points)]
