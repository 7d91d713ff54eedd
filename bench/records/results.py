"""The record schema, the append-only JSONL writer and the run manifest.

Every measurement is one line of `results.jsonl`, written and flushed (and fsync'd) the moment it
exists, so a run that dies keeps all it finished. A reader accepts a torn last line (the process
died mid-write) and says so; a corrupt line in the middle is an error, since that is not a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from bench.errors import BenchError

SCHEMA = 1
RESULTS_FILE = "results.jsonl"
MANIFEST_FILE = "manifest.json"
# how a case's parameters are listed wherever a case is named: its axes in the suites' order first
PARAM_ORDER = ("cache", "lora_r", "batch_size", "grad_accum", "seq_len", "effort")


def params_key(params: dict) -> tuple[tuple[str, str], ...]:
    """A case's parameters as a key that matches across runs, whatever order or type they were written in."""
    return tuple(sorted((k, str(v)) for k, v in params.items()))


def describe_params(params: dict) -> str:
    """A case's parameters as people read them ("lora_r=8, batch_size=2, grad_accum=8")."""
    keys = [k for k in PARAM_ORDER if k in params] + sorted(k for k in params if k not in PARAM_ORDER)
    return ", ".join(f"{k}={params[k]}" for k in keys)


@dataclass(frozen=True)
class Measurement:
    run_id: str
    test_id: str
    suite: str
    metric: str
    value: float | None
    unit: str
    better: str  # "lower" | "higher"
    samples: list[float] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    model: str = ""
    backend: str = ""
    gpu_index: int | None = None
    status: str = "ok"
    gpu_name: str | None = None
    gpu_uuid: str | None = None
    error: str | None = None
    time: float = field(default_factory=time.time)
    extra: dict = field(default_factory=dict)
    schema: int = SCHEMA

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=_jsonable, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict) -> "Measurement":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def case_key(self) -> tuple:
        """What identifies the same measurement in another run: suite, metric and parameters."""
        return (self.suite, self.metric, params_key(self.params))

    @property
    def lane(self) -> tuple[str, str]:
        """What ran it: the engine and the GPU model. A run with several (--backend hf,unsloth,
        --each-gpu) measures each case once per lane."""
        return (self.backend, self.gpu_name or "")


def _jsonable(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


class ResultsWriter:
    """Appends records to a run's results.jsonl: one locked write and fsync per record, so that
    several processes (per-GPU workers, isolated cases) can append to one file without tearing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        with self._locked():
            _truncate_torn_tail(path)

    @contextlib.contextmanager
    def _locked(self):
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def write(self, m: Measurement) -> None:
        data = (m.to_json() + "\n").encode("utf-8")
        with self._locked():
            os.write(self._fd, data)
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _truncate_torn_tail(path: Path) -> None:
    """Cut a partial last line left by a killed writer, so appending keeps the file valid JSONL."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    with open(path, "r+b") as fh:
        fh.truncate(data.rfind(b"\n") + 1)


def read_results(path: Path) -> list[Measurement]:
    """All complete records of a results file or run directory."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise BenchError(f"{path}: no results file; give a run directory (reports/<run-id>) or a results.jsonl")
    records = []
    lines = path.read_text(encoding="utf-8").split("\n")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(Measurement.from_dict(json.loads(line)))
        except (json.JSONDecodeError, TypeError) as exc:
            if i == len(lines):  # a torn final line: the writer died mid-record
                break
            raise BenchError(f"{path}:{i}: corrupt record ({exc}); the file was edited or damaged") from exc
    return records


@dataclass
class RunManifest:
    run_id: str
    started: float
    command: list[str]
    profile: str
    model: str
    backend: str
    device: str
    status: str = "incomplete"  # becomes "complete" when the session ends normally
    finished: float | None = None
    git_commit: str | None = None
    hostname_sha256: str | None = None
    gpus: list[dict] = field(default_factory=list)
    versions: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    baseline: str | None = None
    timings: dict = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)
    gpu_price_per_hour: float | None = None
    workers: list[dict] = field(default_factory=list)  # per-worker GPU, engine, timings (several devices)
    test_hooks: dict = field(default_factory=dict)  # test-only fault or slowdown hooks that were set
    # the options that decide what a case measures, as the command line gives them ("--model": ...):
    # what re-runs a case later (the cross-check) passes again
    options: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    schema: int = SCHEMA

    def write(self, run_dir: Path) -> None:
        tmp = run_dir / (MANIFEST_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, default=_jsonable))
        tmp.replace(run_dir / MANIFEST_FILE)

    @classmethod
    def read(cls, run_dir: Path) -> "RunManifest":
        path = Path(run_dir) / MANIFEST_FILE
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise BenchError(f"{run_dir}: no {MANIFEST_FILE}; is this a run directory (reports/<run-id>)?") from None
        except json.JSONDecodeError as exc:
            raise BenchError(f"{path}: corrupt manifest ({exc})") from exc
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
