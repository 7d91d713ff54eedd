"""`transformers serve` started by the harness for the model under test: on a free port, its log
in the run directory, stopped (with everything it spawned) when the suite is done."""

from __future__ import annotations

import multiprocessing.process
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.errors import BenchError
from bench.serving.endpoint import Endpoint
from bench.telemetry.processes import fresh_context, last_line, start_python

STARTUP_TIMEOUT_S = 600.0  # a 20B model in bf16 reads 40 GB before /health answers
CPU_BLOCK_TOKENS = 256  # KV cache block size given to a CPU server along with its block count
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SelfServed:
    """A context manager: the server is up (its /health answers) inside, gone outside."""

    def __init__(self, name: str, model_dir: str, device: str, continuous_batching: bool, log_path: Path,
                 startup_timeout_s: float = STARTUP_TIMEOUT_S, kv_tokens: int | None = None) -> None:
        self.name, self.model_dir, self.device = name, model_dir, device
        self.continuous_batching = continuous_batching
        self.kv_tokens = kv_tokens  # the most tokens the workload keeps in flight (CPU cache sizing)
        self.log_path = log_path
        self.startup_timeout_s = startup_timeout_s
        self.port = 0
        self.process: multiprocessing.process.BaseProcess | None = None
        self.startup_s: float | None = None

    @property
    def command(self) -> list[str]:
        """The `transformers` command line the server process runs."""
        dtype = "bfloat16" if self.device.startswith("cuda") else "float32"  # what the in-process suites use
        device = "cuda" if self.device.startswith("cuda") else "cpu"  # this process's pinned GPU
        return ["transformers", "serve", self.model_dir, "--host", "127.0.0.1", "--port", str(self.port),
                "--device", device, "--dtype", dtype, "--log-level", "info",
                "--continuous-batching" if self.continuous_batching else "--no-continuous-batching",
                *self._cpu_cache_size()]

    def _cpu_cache_size(self) -> list[str]:
        """On a CPU, continuous batching would size its KV cache from the machine's RAM (60-90% of what
        is free: 14.5 GB resident for the 2-million-parameter model on a 24 GB machine, and two such
        servers at once were killed for memory), so it gets what the workload needs. On a GPU it
        reserves free memory as a production server does."""
        if not self.continuous_batching or self.device.startswith("cuda") or not self.kv_tokens:
            return []
        return ["--cb-block-size", str(CPU_BLOCK_TOKENS), "--cb-num-blocks", str(-(-self.kv_tokens // CPU_BLOCK_TOKENS))]

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.name, f"http://127.0.0.1:{self.port}", self.model_dir, dialect="transformers")

    def __enter__(self) -> SelfServed:
        self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        # a fresh interpreter, as `transformers serve` from a shell is: its start-up includes the
        # imports, and it inherits no fork server's state; its own session: stopping it stops
        # whatever it spawned
        self.process = start_python(fresh_context(), _serve, (self.command,), self.log_path, new_session=True)
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.perf_counter() - started
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.exitcode is not None:
                raise BenchError(f"the {self.name} server exited with code {self.process.exitcode} while starting: "
                                 f"{self.last_log_line()} (log: {self.log_path})")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise BenchError(f"the {self.name} server did not answer /health within {self.startup_timeout_s:.0f} s "
                         f"(log: {self.log_path})")

    @property
    def exit_code(self) -> int | None:
        """None while it runs; its exit code once it has died."""
        return None if self.process is None else self.process.exitcode

    def last_log_line(self) -> str:
        return last_line(self.log_path)

    def stop(self) -> None:
        if self.process is None or self.process.exitcode is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass
            self.process.join(STOP_TIMEOUT_S)
            if self.process.exitcode is not None:
                return


def _serve(argv: list[str]) -> None:
    """The server process: the transformers CLI."""
    import sys

    from transformers.cli.transformers import main
    from transformers.utils import logging

    # no progress bar in a log; tqdm's lock would be a multiprocessing semaphore that a stopped
    # server never releases (the harness's resource tracker warns about it at exit)
    logging.disable_progress_bar()
    sys.argv = argv
    main()
