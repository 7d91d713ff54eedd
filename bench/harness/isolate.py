"""Cases in child processes, so that a case's figures are its own.

In one long process a case inherits what the cases before it left: Unsloth keeps about 1.2 GB per
finished case, an engine's allocator cache outlives its turn, a crash or a poisoned CUDA context
takes every later case down. So on a GPU each *load group* runs in a fresh Python process
(`--isolate group`, the default there): the cold and warm loads together (the cold load is the
process's first), all inference cases together (they share one loaded model, as a server would),
and every training case, the adapter and the resume case alone (each loads its own model).
`--isolate case` gives every case its own process; `--isolate off` runs all in this one.

Children are forked from a fork server that imported torch and the engine's libraries without
touching CUDA (`bench.telemetry.processes`), never from the parent, which never touches CUDA while
they run. Each child runs `pytest NODEIDS --bench-worker-run RUN_DIR`: it appends its records to
the run's results file and its pytest reports to a file of its own, which the parent replays under
each case's own test id.

A child then costs a fork, pytest's start and what the server could not preload (Unsloth's import,
20-45 s: it initializes CUDA, so each child imports it). On a machine with enough cores the next
two groups' children are started while the current one runs, do their imports and wait (`standby`)
until told to go, after the current child has exited. There the load and inference cases of the
hf engine, which need only torch and transformers' model stack and not peft and trl (16 s of the
server's 23 s on an H100 host), start in a fresh interpreter importing only that while the server
is still importing, so that the run's first case does not wait for the whole engine (the plugin
runs inference before training: the server is done before a training child needs it). With
Unsloth a waiting child holds a CUDA context, which the device-wide NVML figure of the running case
includes and the per-process one (`nvml_process_peak_gb`) does not. A group timing generation runs
with no child beside it (`alone`), as a user's script runs with no other process of ours importing
or holding the GPU (on an H100 that did not move the harness's decode: 0.79-0.82 of a plain
script's with the training group's child waiting beside it, 0.825 without). The group after it then
starts when it ends, its import not hidden. What isolation cost (start-up the run
waited for, child time outside the cases) goes into the manifest.

Correctness checks (cases marked `correctness`: the resume and adapter round-trip checks, which time
nothing) planned one after the other run two at a time, each in its own process, where the GPU has
room for both (`room`): their verdicts and their own processes' memory figures are what they would
be alone, and on the 20B replica the two took 46 s side by side against 80-91 s one after the
other (docs/measurements/h100-runs.md). The figures of the whole
GPU and host (NVML's device-wide peak and utilization, the others' CPU) would include the other
check: a child told it runs beside another leaves them out, saying why.
"""

from __future__ import annotations

import json
import multiprocessing.context
import multiprocessing.process
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.telemetry.processes import fresh_context, preloading_context, run_pytest, server_ready, start_python
from bench.analysis.time_budget import BESIDE_TIMING
from bench.errors import BenchError
from bench.records.results import RESULTS_FILE, Measurement, read_results
from bench.telemetry.environment import redact

TAIL_CHARS = 3000
MODES = ("auto", "off", "group", "case")
# Suites whose measured work runs in processes they start themselves (a server, the two sides of
# the concurrency suite): the parent runs their cases, with those processes forked from its fork
# server. A child of their own would only add a process start and a second fork server, and the
# figures of their cases are those processes' and the GPU's, never the test process's.
PARENT_SUITES = frozenset({"concurrency", "serve"})
# Below this many cores a waiting child's imports would compete with the running case's threads.
STANDBY_MIN_CPUS = 8
# Children started ahead: two, because a short group (a load, a tiny model's training) ends before
# the next child has finished importing (13 s for torch + transformers + peft + trl on an H200 host).
STANDBY_DEPTH = 2
POLL_S = 0.05
# Correctness checks run side by side at most this many at a time: each keeps a core or two busy
# feeding its GPU work, which the standby rule's 8 cores leave room for twice.
BESIDE_MAX = 2
BESIDE_NOTE = ("ran beside another correctness check, each in a process of its own: the GPU's and the "
               "host's figures would include the other")


def resolve_mode(requested: str, device: str, child: bool) -> str:
    """`auto`: a load group per process on a GPU, one process on the CPU (where a process start is a
    large share of a tiny case and the memory figure is RSS, which a fresh process does not clean)."""
    if requested not in MODES:
        raise BenchError(f"--isolate {requested}: choose one of {', '.join(MODES)}")
    if child:
        return "off"
    if requested == "auto":
        return "group" if device.startswith("cuda") else "off"
    return requested


def plan_groups(nodeids: list[str], groups: list[str | None], mode: str) -> list[list[str]]:
    """Consecutive cases of one load group share a process; a case without a group is alone."""
    out: list[list[str]] = []
    last = object()
    for nodeid, group in zip(nodeids, groups):
        if mode == "group" and group is not None and group == last:
            out[-1].append(nodeid)
        else:
            out.append([nodeid])
        last = group
    return out


def pytest_command(nodeids: list[str], options) -> list[str]:
    """`python -m pytest` with `pytest_args` (a confirming re-measurement: a process of its own)."""
    return [sys.executable, "-m", "pytest", *pytest_args(nodeids, options)]


def pytest_args(nodeids: list[str], options) -> list[str]:
    """A child pytest running some cases of this session with its settings (isolated cases, a
    confirming re-measurement). The parent compares and judges; the child only measures."""
    cmd = [*nodeids, "-q", "-rfEs", "-p", "no:cacheprovider",
           # a plugin module the fork server imported with a library (anyio) cannot be rewritten: say nothing
           "-W", "ignore::pytest.PytestAssertRewriteWarning",
           "--model", options.model, "--backend", options.backend, "--profile", options.profile,
           "--dataset", options.dataset, "--precision", options.precision]
    if options.gpu:
        cmd += ["--gpu", options.gpu]
    if options.baseline:
        cmd += ["--baseline", options.baseline]
    if options.baseline_dir:
        cmd += ["--baseline-dir", options.baseline_dir]
    if options.max_time is not None:
        cmd += ["--max-time", str(options.max_time)]
    if options.plain_control:
        cmd += ["--plain-control"]
    if options.run_gpus and len(options.run_gpus) > 1:  # a worker's child: pinned to its GPU, told of the others
        cmd += ["--bench-run-gpus", ",".join(map(str, options.run_gpus))]
    if options.endpoint:  # the key itself stays in the environment the child inherits
        cmd += ["--endpoint", options.endpoint, "--endpoint-api-key-env", options.endpoint_key_env]
    if options.endpoint_model:
        cmd += ["--endpoint-model", options.endpoint_model]
    if options.slo:
        cmd += ["--slo", options.slo]
    return cmd


@dataclass(frozen=True)
class CaseResult:
    """What the parent reports for one case: the child's own report of it, or how the child died."""

    outcome: str  # "passed" | "failed" | "skipped"
    longrepr: str | None
    durations: dict[str, float]  # setup, call, teardown as the child timed them (--durations shows each)
    records: list[Measurement]
    died: str | None = None  # the child ended before this case finished: why


@dataclass
class Child:
    nodeids: list[str]
    proc: multiprocessing.process.BaseProcess
    log: Path
    reports: Path
    go: Path
    started_wall: float  # records of this child are those written after it started
    went_at: float = 0.0  # perf_counter when it was told to go
    ended_at: float = 0.0  # perf_counter when the parent saw it had exited
    first: bool = False  # the run's first child: the run waited for all of its start-up

    def is_ready(self) -> bool:
        return self.go.with_suffix(".ready").exists() or self.proc.exitcode is not None


@dataclass
class Isolator:
    """Runs the planned groups one after another, each in its own child, the next ones in standby."""

    run_dir: Path
    options: object
    groups: list[list[str]]
    case_timeout: float | None = None
    standby: bool = False
    in_order: bool = True  # the groups run in the planned order (not so in an xdist worker)
    context: multiprocessing.context.BaseContext | None = None  # where children come from: the session's fork server
    # groups that need less than the fork server imports (the hf engine's load and inference cases):
    # while the server still imports, they start in a fresh interpreter that imports only that. Only
    # with standby: on a few cores that interpreter's import competes with the server's
    light: frozenset[int] = frozenset()
    # groups that always start in a fresh interpreter: those timing a cold load, which must import
    # no more before it than a user's script does (the fork server imports the whole engine)
    fresh: frozenset[int] = frozenset()
    # groups that run with no other child of the run beside them: those timing generation, which is
    # host-bound, as a user's script runs with no other process of ours importing or holding the GPU
    alone: frozenset[int] = frozenset()
    # what must be done before the first child may use the GPU (the parent's measurement of the
    # GPU's ceilings, made while that child imported)
    before_first_go: Callable[[], None] | None = None
    results: dict[str, CaseResult] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # the children's one-off costs (import, build)
    children: dict[int, Child] = field(default_factory=dict)
    waited_s: float = 0.0  # start-up the run waited for (not hidden behind the previous group)
    outside_cases_s: float = 0.0  # child time after go that no case's setup, call or teardown used
    processes: int = 0
    fresh_processes: int = 0  # of them, started in a fresh interpreter (`fresh`, `light`) rather than forked
    # the first child's own import of what the fork server could not preload (Unsloth, which starts
    # CUDA as it is imported: 30-45 s): a one-off cost the run waited for, not isolation's
    engine_import_s: float = 0.0
    first_wait_s: float | None = None
    correctness: frozenset[int] = frozenset()  # groups whose every case is a correctness check
    # whether the GPU has room for this many correctness checks at once; None: one at a time
    room: Callable[[int], bool] | None = None
    beside_checks: int = 0  # groups that ran beside another
    beside_s: float = 0.0  # child time that ran beside another child: lane-seconds beyond the wall time

    def __post_init__(self) -> None:
        self.context = self.context or preloading_context()
        self.scratch = Path(tempfile.mkdtemp(prefix="isolation-logs-", dir=self.run_dir))
        self.index = {nodeid: i for i, group in enumerate(self.groups) for nodeid in group}

    def result(self, nodeid: str, following: str | None = None) -> CaseResult:
        """`following`: the case pytest runs after this one, where known (an xdist worker knows only
        that much of its order: the scheduler decides the rest)."""
        if nodeid not in self.results:
            self._run(self.index[nodeid], self.index.get(following) if following else None)
        return self.results.pop(nodeid)

    def _spawn(self, i: int) -> Child:
        nodeids = self.groups[i]
        stem = self.scratch / f"group-{i}"
        args = pytest_args(nodeids, self.options) + ["--bench-worker-run", str(self.run_dir),
                                                     "--bench-reports", f"{stem}.reports.jsonl",
                                                     "--bench-standby", f"{stem}.go"]
        if self.case_timeout:
            args += ["--timeout", str(self.case_timeout)]
        log = stem.with_suffix(".log")
        fresh = self._fresh(i)
        proc = start_python(fresh_context() if fresh else self.context, run_pytest, (args,), log)
        self.processes += 1
        self.fresh_processes += fresh
        child = Child(nodeids, proc, log, Path(f"{stem}.reports.jsonl"), Path(f"{stem}.go"), time.time())
        self.children[i] = child
        return child

    def _server_importing(self) -> bool:
        """Whether a child forked now would wait for the fork server's import of the engine."""
        return self.context.get_start_method() == "forkserver" and not server_ready()

    def _fresh(self, i: int) -> bool:
        return i in self.fresh or (i in self.light and self._server_importing())

    def _start_ahead(self, ahead: list[int]) -> None:
        """Start the standbys that can start now: each imports while this group runs and waits for
        its own go. One forked from a fork server still importing would make this process wait for
        the server: it starts later, once the server serves."""
        for j in ahead:
            if j not in self.children and (self._fresh(j) or server_ready()):
                self._spawn(j)

    def _ahead(self, batch: list[int], following: int | None) -> list[int]:
        """The groups to start in standby while `batch` runs: the next ones in the planned order (only
        the known next one in an xdist worker), none beside a group that runs alone, and none after
        one: a group started now would still be waiting, with its engine imported, when that one runs."""
        if not self.standby or self.alone.intersection(batch):
            return []
        after = batch[-1] + 1
        ahead = list(range(after, min(after + STANDBY_DEPTH, len(self.groups)))) if self.in_order else \
            [j for j in (following,) if j is not None and j not in batch]
        for k, j in enumerate(ahead):
            if j in self.alone:
                return ahead[:k + 1]
        return ahead

    def _batch(self, i: int) -> list[int]:
        """Group `i`, with the correctness checks planned right after it when it is one too and the
        GPU has room for them all at once (the planned order only: an xdist worker knows no more
        than its next case)."""
        batch = [i]
        if self.room is None or not (self.standby and self.in_order) or i not in self.correctness:
            return batch
        while len(batch) < BESIDE_MAX and batch[-1] + 1 in self.correctness:
            batch.append(batch[-1] + 1)
        while len(batch) > 1 and not self.room(len(batch)):
            batch.pop()
        return batch

    def _run(self, i: int, following: int | None) -> None:
        started = time.perf_counter()
        batch = self._batch(i)
        children: list[Child] = []
        for j in batch:
            child = self.children.pop(j, None)
            if child is None:
                importing = self._server_importing() and not self._fresh(j)
                child = self._spawn(j)
                if importing:  # forking waited for the server's import of the engine: a one-off, not isolation's
                    self.engine_import_s += time.perf_counter() - started
                    started = time.perf_counter()
            children.append(child)
        self.children.update(zip(batch, children))  # running: stopped by `close` on an interrupt
        ahead = self._ahead(batch, following)
        self._start_ahead(ahead)
        while not all(child.is_ready() for child in children):
            self._start_ahead(ahead)
            time.sleep(POLL_S)
        if self.before_first_go is not None:
            self.before_first_go()
            self.before_first_go = None
        waited = time.perf_counter() - started
        if self.first_wait_s is None:
            self.first_wait_s, children[0].first = waited, True
        self.waited_s += waited
        went = time.perf_counter()
        for child in children:
            child.went_at = went
            tell_go(child.go, BESIDE_NOTE if len(children) > 1 else "")
        most = max(len(child.nodeids) for child in children)
        deadline = went + self.case_timeout * most + 60 if self.case_timeout else None
        while True:
            running = [child for child in children if child.proc.exitcode is None]
            for child in children:
                if not child.ended_at and child.proc.exitcode is not None:
                    child.ended_at = time.perf_counter()
            if not running or (deadline is not None and time.perf_counter() >= deadline):
                break
            # a child's end is seen within POLL_S while another runs beside it (its lane time counts)
            running[0].proc.join(POLL_S * (10 if len(running) == 1 else 1))
            self._start_ahead(ahead)
        for j, child in zip(batch, children):
            if child.proc.exitcode is None:
                child.proc.kill()
                child.proc.join()
                child.ended_at = time.perf_counter()
            del self.children[j]
            self._collect(child, child.proc.exitcode)
        if len(children) > 1:
            self.beside_checks += len(children)
            walls = [child.ended_at - went for child in children]
            self.beside_s += max(0.0, sum(walls) - max(walls))

    def _collect(self, child: Child, code: int) -> None:
        wall = (child.ended_at or time.perf_counter()) - child.went_at
        reports, timings = _read_reports(child.reports)
        for name, seconds in timings.items():  # one-off costs: the worst child's
            self.timings[name] = max(seconds, self.timings.get(name, 0.0))
        if child.first:
            imported = min(self.first_wait_s, sum(v for k, v in timings.items() if k.startswith("import_")))
            self.engine_import_s += imported
            self.waited_s -= imported
        records = [r for r in read_results(self.run_dir) if r.time >= child.started_wall] \
            if (self.run_dir / RESULTS_FILE).is_file() else []
        log = redact(child.log.read_text(encoding="utf-8", errors="replace"))
        child.log.write_text(log, encoding="utf-8")  # kept in the run directory: no secret in it
        output = log[-TAIL_CHARS:]
        spent = 0.0
        for nodeid in child.nodeids:
            phases = reports.get(nodeid, {})
            duration = sum(r["duration"] for r in phases.values())
            spent += duration
            mine = [r for r in records if r.test_id == nodeid]
            call = phases.get("call") or phases.get("setup")
            if call is None or ("teardown" not in phases and call["outcome"] == "passed"):
                why = death_reason(code) if code not in (0, 1) else "the isolated process ended before this case ran"
                self.results[nodeid] = CaseResult("failed", f"{why}\n{output}", {}, mine, died=why)
                continue
            outcome = "failed" if any(r["outcome"] == "failed" for r in phases.values()) else call["outcome"]
            text = next((r["longrepr"] for r in phases.values() if r["outcome"] != "passed"), None)
            self.results[nodeid] = CaseResult(outcome, text, {when: r["duration"] for when, r in phases.items()}, mine)
        self.outside_cases_s += max(0.0, wall - spent)
        for path in (child.go, child.go.with_suffix(".ready"), child.reports):
            path.unlink(missing_ok=True)  # the log stays, for reading

    def close(self) -> None:
        """Children still running (an interrupt) and standbys nobody needed (a -x stop) are stopped;
        their scratch stays for reading."""
        for child in self.children.values():
            child.proc.kill()
            child.proc.join()
        self.children.clear()

    def describe(self, wall_s: float) -> str:
        unit = "load group" if any(len(g) > 1 for g in self.groups) else "case"
        paid = self.waited_s + self.outside_cases_s
        forked = ""
        if self.context.get_start_method() == "forkserver":
            forked = " forked from a fork server that had imported the engine's libraries"
            if self.fresh_processes:
                forked = (f", {self.processes - self.fresh_processes}{forked} and {self.fresh_processes} started "
                          "fresh, importing only what their cases need first: a cold load's only what a user's "
                          "script imports")
        count = f"{self.processes} process{'es' if self.processes != 1 else ''}"
        return (f"isolation: each {unit} ran in a fresh process ({count}{forked}"
                f"{self._standby_text()}"
                f"{self._beside_text()}); it cost "
                f"{paid:.1f} s of the run's {wall_s:.0f} s ({self.waited_s:.1f} s waiting for a process to start, "
                f"{self.outside_cases_s:.1f} s of process time outside the cases), so that no case's memory "
                "figures include what an earlier case left")

    def _standby_text(self) -> str:
        if not self.standby:
            return ""
        alone = " except beside generation, which ran with no other child" if self.alone else ""
        return f", the next ones started while the current one ran{alone}"

    def _beside_text(self) -> str:
        if not self.beside_checks:
            return ""
        return (f"; {self.beside_checks} correctness checks ran two at a time, {self.beside_s:.1f} s of them beside "
                "the other, so their device-wide figures are left out")

    def cost(self) -> dict[str, float]:
        return {"isolation_processes": self.processes, "isolation_fresh_processes": self.fresh_processes,
                "isolation_waited_s": round(self.waited_s, 2),
                "isolation_outside_cases_s": round(self.outside_cases_s, 2),
                "isolation_beside_checks": self.beside_checks, BESIDE_TIMING: round(self.beside_s, 2)}


def _read_reports(path: Path) -> tuple[dict[str, dict[str, dict]], dict[str, float]]:
    out: dict[str, dict[str, dict]] = {}
    timings: dict[str, float] = {}
    if not path.is_file():
        return out, timings
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a torn last line of a killed child
            continue
        if "timings" in row:
            timings.update(row["timings"])
        else:
            out.setdefault(row["nodeid"], {})[row["when"]] = row
    return out, timings


def write_report(path: str, report) -> None:
    """The child's side: one pytest report, as the parent replays it."""
    longrepr = None
    if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
        longrepr = report.longrepr[2]
    elif report.longrepr is not None:
        longrepr = redact(str(report.longrepr))
    row = {"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome,
           "duration": report.duration, "longrepr": longrepr}
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(row) + "\n")


def write_timings(path: str, timings: dict[str, float]) -> None:
    """The child's side, at its end: its one-off costs, which only the parent's manifest keeps."""
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps({"timings": timings}) + "\n")


def tell_go(go: Path, note: str) -> None:
    """The parent's side: the go file appears whole (written aside, then renamed), holding what the
    child must know about its turn: why its device-wide figures are not its own, or nothing."""
    aside = go.with_suffix(".telling")
    aside.write_text(note, encoding="utf-8")
    aside.rename(go)


def wait_for_go(go: str) -> str | None:
    """The child's side: say it is ready (imports done), wait until the parent says go, and return
    why its device-wide figures will not be its own (it runs beside another case), or None."""
    Path(go).with_suffix(".ready").touch()
    while not os.path.exists(go):
        time.sleep(POLL_S)
    return Path(go).read_text(encoding="utf-8") or None


def standby_possible(device: str) -> bool:
    return device.startswith("cuda") and (os.cpu_count() or 1) >= STANDBY_MIN_CPUS


def death_reason(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the isolated process died with {name}"
    return f"the isolated process exited with code {code}"
