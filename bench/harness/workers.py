"""Several GPUs (or engines) in one session: one pytest-xdist worker per slot, each pinned to its GPU.

The controller process never touches CUDA: it plans the slots, creates the run directory, hands each
xdist worker its slot through `workerinput`, and at the end reads what the workers appended to the
run's results file. A worker is an ordinary in-process session pinned to one GPU and one backend
that writes into the controller's run directory (the same "worker mode" an isolated case uses).

Workers on different GPUs run at the same time. Workers that compare engines on one GPU take turns
(`turn`), so that neither engine's timings include the other's load; workers that share a GPU on
purpose (`--workers-per-gpu`) run at the same time, and the report says their figures include
each other's load.
"""

from __future__ import annotations

import json
import os
import time
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from bench.errors import BenchError

WORKERS_DIR = "workers"
TURN_POLL_S = 1.0


@dataclass(frozen=True)
class Slot:
    gpu: int | None  # nvidia-smi index; None: the CPU
    backend: str
    turn: int | None = None  # position in the queue of workers that take turns on one device


@dataclass(frozen=True)
class Plan:
    slots: list[Slot]
    dist: str  # xdist's --dist mode: "loadgroup" spreads the cases, "each" runs every case per slot

    @property
    def shares_device(self) -> bool:
        """Workers that run at the same time on one device: their timings include each other's."""
        devices = [s.gpu for s in self.slots if s.turn is None]
        return len(devices) != len(set(devices))


SPREADS = {"loadgroup": "cases spread over the workers", "loadfile": "each test file on one worker",
           "loadscope": "each module on one worker"}


def plan(gpus: list[int] | None, backends: list[str], workers_per_gpu: int = 1, each_gpu: bool = False,
         workers: int | None = None, dist: str | None = None) -> Plan | None:
    """The worker slots of a session, or None when it runs in this process (one device, one engine).

    `workers` is a worker count the user gave pytest-xdist (`-n N`): N workers over the GPUs in turn.
    `dist` is the user's `--dist`: kept where it also keeps every load group on one worker
    (loadfile, loadscope: a whole file or module per worker, training cases spread less); a
    pytest run of other tests (the harness's own, `-n 2 --dist loadfile`) needs its files whole.
    """
    devices: list[int | None] = list(gpus) if gpus else [None]
    if workers_per_gpu < 1:
        raise BenchError(f"--workers-per-gpu {workers_per_gpu}: give 1 or more")
    if len(backends) > 1:
        if len(devices) > 1 or workers_per_gpu > 1 or workers:
            raise BenchError(f"--backend {','.join(backends)} compares engines on one device, in turns; "
                             "pass a single --gpu and no --workers-per-gpu or -n")
        return Plan([Slot(devices[0], b, turn=i) for i, b in enumerate(backends)], "each")
    backend = backends[0]
    if each_gpu:
        if workers_per_gpu > 1 or workers:
            raise BenchError("--each-gpu runs every case once on each GPU; drop --workers-per-gpu and -n")
        if len(devices) < 2:
            raise BenchError("--each-gpu needs several GPUs: pass e.g. --gpu 0,1 or --gpu all")
        return Plan([Slot(d, backend) for d in devices], "each")
    count = workers or len(devices) * workers_per_gpu
    if count <= 1:
        return None
    return Plan([Slot(devices[k % len(devices)], backend) for k in range(count)],
                dist if dist in SPREADS else "loadgroup")


def describe(plan_: Plan) -> list[str]:
    """The manifest's notes on how the run was spread."""
    where = ", ".join(f"gw{k}: {'GPU ' + str(s.gpu) if s.gpu is not None else 'CPU'} ({s.backend})"
                      for k, s in enumerate(plan_.slots))
    how = {"each": "every case on every worker", **SPREADS}[plan_.dist]
    notes = [f"{len(plan_.slots)} pytest-xdist workers, {how}: {where}"]
    if any(s.turn is not None for s in plan_.slots):
        notes.append("the engines took turns on the device: each one's timings are its own; NVML figures are "
                     "whole-device, and the workers table says what a finished engine's process still held")
    if plan_.shares_device:
        notes.append("several workers shared a device at the same time: their timings and NVML figures "
                     "include each other's load (torch's allocator figures are per process)")
    return notes


def worker_index(workerid: str) -> int:
    """xdist names its workers gw0, gw1, ...; the number picks the slot."""
    return int(workerid.removeprefix("gw"))


def configure_xdist(config, plan_: Plan) -> None:
    """Turn xdist on for this session: xdist's own configure runs after ours (it is `trylast`)."""
    config.option.numprocesses = len(plan_.slots)
    config.option.tx = ["popen"] * len(plan_.slots)
    config.option.dist = plan_.dist


def group_of(suite: str | None, module: str) -> str | None:
    """The xdist group of a suite case: cases that share a model loaded once per module stay on one
    worker (load: the cold load must be the process's first; infer: one loaded model for all
    batches); training cases each load their own model and spread freely."""
    if suite in (None, "train"):
        return None
    return module


def strip_group(nodeid: str, group: str | None) -> str:
    """xdist's loadgroup appends `@group` to a node id; records keep the id a plain run would use."""
    suffix = f"@{group}" if group else None
    return nodeid[: -len(suffix)] if suffix and nodeid.endswith(suffix) else nodeid


# ---- what a worker leaves for the controller ------------------------------------------------------
def part_path(run_dir: Path, workerid: str) -> Path:
    return Path(run_dir) / WORKERS_DIR / f"{workerid}.json"


def write_part(run_dir: Path, workerid: str, part: dict) -> None:
    """A worker's own facts (its GPU, engine, run-level timings, calibration), one file per worker
    so that no two processes ever write the manifest."""
    path = part_path(run_dir, workerid)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"worker": workerid, "pid": os.getpid(), **part}, indent=2, default=str))
    tmp.replace(path)


def read_parts(run_dir: Path) -> list[dict]:
    folder = Path(run_dir) / WORKERS_DIR
    if not folder.is_dir():
        return []
    parts = []
    for path in sorted(folder.glob("gw*.json"), key=lambda p: worker_index(p.stem)):
        try:
            parts.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # a worker killed mid-write: its records still count
    return parts


def fold_parts(manifest, parts: list[dict]) -> None:
    """The workers' facts into the controller's manifest: each GPU's calibration, and every
    worker's run-level timings under its own name."""
    manifest.workers = parts
    for gpu in manifest.gpus:
        gpu["calibration"] = next((p["calibration"] for p in parts if p.get("calibration")
                                   and (p.get("gpu") or {}).get("uuid") == gpu.get("uuid")), {})
    manifest.calibration = next((g["calibration"] for g in manifest.gpus if g["calibration"]), {})
    for part in parts:
        manifest.timings.update({f"{name} ({part['worker']})": v for name, v in part.get("timings", {}).items()})


# ---- turns ----------------------------------------------------------------------------------------
def _done_path(run_dir: Path, turn: int) -> Path:
    return Path(run_dir) / WORKERS_DIR / f"turn-{turn}.done"


def finish_turn(run_dir: Path, turn: int) -> None:
    path = _done_path(run_dir, turn)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(os.getpid()))


def wait_for_turn(run_dir: Path, turn: int, workers: int, start_timeout_s: float = 600.0) -> float:
    """Block until every worker has configured (imported its engine: an import running beside a
    timing would distort it) and every earlier turn has finished; returns the seconds waited.

    A worker of an earlier turn that died without finishing it does not block the queue, nor does
    one that never started within `start_timeout_s`.
    """
    started = time.monotonic()
    while sum(1 for p in read_parts(run_dir) if p.get("ready")) < workers and time.monotonic() - started < start_timeout_s:
        time.sleep(TURN_POLL_S)
    for earlier in range(turn):
        while not _done_path(run_dir, earlier).exists() and _alive(run_dir, earlier):
            time.sleep(TURN_POLL_S)
    return time.monotonic() - started


def _alive(run_dir: Path, turn: int) -> bool:
    """Whether the worker holding `turn` still runs, by the pid in its part file."""
    for part in read_parts(run_dir):
        if part.get("turn") == turn:
            try:
                os.kill(int(part["pid"]), 0)
                return True
            except (OSError, KeyError, ValueError):
                return False
    return False  # it never started


class RunOwner(Protocol):
    """What the controller needs of its session: the plan, the run directory, the GPUs."""

    plan: "Plan"
    planned_dir: Path
    gpu_indices: list[int] | None

    def start(self) -> Path: ...


class Controller:
    """Hooks of the process that runs no case itself but hands each xdist worker its slot."""

    def __init__(self, session: "RunOwner") -> None:
        self.session = session
        self.slot_of: dict[str, Slot] = {}
        self.orphaned: list[Slot] = []  # slots of crashed workers, for their replacements

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        """A worker's slot by its number; xdist numbers a crashed worker's replacement on (gw2 of
        two slots): it takes the slot its predecessor left."""
        workerid = node.workerinput["workerid"]
        index = worker_index(workerid)
        slots = self.session.plan.slots
        slot = slots[index] if index < len(slots) else self.orphaned.pop(0)
        self.slot_of[workerid] = slot
        node.workerinput["bench_run_dir"] = str(self.session.planned_dir)
        node.workerinput["bench_slot"] = dataclasses.asdict(slot)
        node.workerinput["bench_dist"] = self.session.plan.dist
        node.workerinput["bench_gpus"] = self.session.gpu_indices

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        if error is not None and node.workerinput["workerid"] in self.slot_of:
            self.orphaned.append(self.slot_of[node.workerinput["workerid"]])

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids) -> None:
        """A worker that collected suite cases has made the run directory: write the manifest."""
        if self.session.planned_dir.is_dir():
            self.session.start()
