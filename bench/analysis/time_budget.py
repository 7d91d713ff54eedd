"""Where a run's wall time went: timed rounds, one-off costs, and the harness's overhead.

Overhead is wall time minus timed work minus one-off costs. Timed work is
the time inside the rounds whose samples became figures. One-off costs are what any run of the
workload pays once, however long it runs: importing the engine's libraries (torch, transformers,
peft, trl; on an H100 host 20 s, as long as a training script of one's own would take), the cases'
fixture setups (a model prepared or loaded for a module, a server started and warmed up) and the
phases named in ONE_OFF_PHASES (a model loaded inside a case, a trainer built, the warm-up round or
step with its first-call compilation, a fork server's import of the engine that a case waited for,
the concurrency case's two processes loading and warming up).
Everything else is what measuring adds, the harness's overhead: inside the cases (profiled rounds,
unloading, cases that check correctness and time nothing) and outside them (the process's start-up
and collection, isolated processes starting, comparing). The wall time ends when the run does,
before its report is rendered (the report shows it).

Where several workers ran cases at the same time, the run's capacity is its wall time times the
number of workers, and the shares are of that. Correctness checks that ran side by side (each in
an isolated process of its own) add the seconds one ran beside the other to the capacity.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from bench.records.results import Measurement

CASE_TIME_METRIC = "case_s"
# Phases of a case's untimed work (`Case.phase`) that count as one-off costs.
ONE_OFF_PHASES = frozenset({"load and LoRA", "trainer set-up", "warm-up step", "warm-up round", "engine import",
                            "set-up of the two sides"})
WALL_TIMING = "run_wall_s"  # the run's wall time, summed over its resumed parts
STARTUP_TIMING = "startup_s"  # from the process's start to its run directory's opening
# The engine's import that the run waited for: in its own process, or for the fork server that
# preloads it for isolated children and the first child's import of what it could not preload (the
# later children's own imports run ahead, beside other cases: not counted)
ENGINE_IMPORT_TIMING = "engine_import_s"
# Seconds an isolated correctness check ran beside another (bench.harness.isolate): a second lane
BESIDE_TIMING = "isolation_beside_s"


@dataclass(frozen=True)
class SuiteTime:
    suite: str
    cases: int
    case_s: float  # setup and call of its cases
    setup_s: float  # fixtures' setup
    timed_s: float  # inside the timed rounds
    phases: dict[str, float] = field(default_factory=dict)  # named untimed work, summed over the cases

    @property
    def one_off_s(self) -> float:
        """Fixtures' setup, and the phases any run of the workload pays once."""
        return self.setup_s + sum(v for k, v in self.phases.items() if k in ONE_OFF_PHASES)

    @property
    def untimed_s(self) -> float:
        """Inside the cases, neither timed nor one-off: what measuring added there."""
        return max(0.0, self.case_s - self.one_off_s - self.timed_s)

    def largest_phases(self, n: int = 3, one_off: bool = False) -> list[tuple[str, float]]:
        """The largest named phases of overhead (or, `one_off`, of one-off costs)."""
        chosen = [(k, v) for k, v in self.phases.items() if v > 0 and (k in ONE_OFF_PHASES) == one_off]
        return sorted(chosen, key=lambda kv: -kv[1])[:n]


@dataclass(frozen=True)
class TimeBudget:
    wall_s: float
    lanes: int  # workers that ran cases at the same time
    startup_s: float | None
    suites: tuple[SuiteTime, ...]
    engine_import_s: float = 0.0  # outside the cases, a one-off cost
    beside_s: float = 0.0  # case time that ran beside another case of the same lane

    @property
    def capacity_s(self) -> float:
        return self.wall_s * self.lanes + self.beside_s

    @property
    def timed_s(self) -> float:
        return sum(s.timed_s for s in self.suites)

    @property
    def one_off_s(self) -> float:
        return self.engine_import_s + sum(s.one_off_s for s in self.suites)

    @property
    def untimed_in_cases_s(self) -> float:
        return sum(s.untimed_s for s in self.suites)

    @property
    def outside_cases_s(self) -> float:
        """Overhead outside the cases: the wall time no case and no engine import used."""
        return max(0.0, self.capacity_s - sum(s.case_s for s in self.suites) - self.engine_import_s)

    @property
    def overhead_s(self) -> float:
        return max(0.0, self.capacity_s - self.timed_s - self.one_off_s)

    def share(self, seconds: float) -> float:
        return seconds / self.capacity_s if self.capacity_s > 0 else float("nan")

    def headline(self) -> str:
        """One line for the terminal."""
        def part(seconds: float) -> str:
            return f"{seconds:.1f} s ({self.share(seconds):.0%})"

        lanes = f" x {self.lanes} workers" if self.lanes > 1 else ""
        if self.beside_s:
            lanes += f" + {self.beside_s:.1f} s of correctness checks side by side"
        return (f"time: {self.wall_s:.1f} s{lanes}; timed rounds {part(self.timed_s)}, one-off costs "
                f"{part(self.one_off_s)}, harness overhead {part(self.overhead_s)}")


def suite_times(records: Iterable[Measurement], order: Iterable[str] = ()) -> tuple[SuiteTime, ...]:
    """Per suite, from each case's time record (the last one where a case was measured twice)."""
    last: dict[tuple, Measurement] = {}
    for r in records:
        if r.metric == CASE_TIME_METRIC and r.value is not None:
            last[(r.test_id, r.gpu_uuid, r.backend)] = r
    by_suite: dict[str, list[Measurement]] = {}
    for r in last.values():
        by_suite.setdefault(r.suite, []).append(r)
    ranked = list(order)
    names = sorted(by_suite, key=lambda s: (ranked.index(s) if s in ranked else len(ranked), s))
    return tuple(SuiteTime(name, len(by_suite[name]), sum(r.value for r in by_suite[name]),
                           sum(r.extra.get("setup_s", 0.0) for r in by_suite[name]),
                           sum(r.extra.get("timed_s", 0.0) for r in by_suite[name]),
                           _summed(r.extra.get("phases", {}) for r in by_suite[name])) for name in names)


def _summed(dicts: Iterable[dict[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for d in dicts:
        for name, seconds in d.items():
            total[name] = total.get(name, 0.0) + seconds
    return total


def time_budget(records: Iterable[Measurement], timings: dict, workers: list[dict] | None = None,
                order: Iterable[str] = ()) -> TimeBudget | None:
    """None for a run that recorded no wall time (made before this was measured, or still running).
    `workers`: the manifest's; those that took turns on one device count as one lane."""
    wall = timings.get(WALL_TIMING)
    if not wall:
        return None
    lanes = 1 if not workers or any(w.get("turn") is not None for w in workers) else len(workers)
    # workers file theirs as "engine_import_s (gw0)": side by side each counts in its own lane; taking
    # turns on one device, the later ones import during the first one's turn
    imports = [v for k, v in timings.items() if k == ENGINE_IMPORT_TIMING or k.startswith(f"{ENGINE_IMPORT_TIMING} (")]
    engine_import = (sum(imports) if lanes > 1 else max(imports)) if imports else 0.0
    return TimeBudget(float(wall), lanes, timings.get(STARTUP_TIMING), suite_times(records, order), engine_import,
                      float(timings.get(BESIDE_TIMING, 0.0)))
