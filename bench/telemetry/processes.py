"""Processes the harness starts: an isolated child, a server, a side of the concurrency suite.

They come from a preloading fork server (`multiprocessing`'s forkserver): one process imports
torch and the engine's libraries once, without touching CUDA, and every child is forked from it
with those imports done. Starting a fresh Python on a GPU host costs that import each time (torch,
transformers, peft and trl: 17-21 s on an H100 host, against 4 s on the 2-core CPU machine); a
forked child starts in about a second and initializes CUDA itself, so its figures are still its own.

They must not outlive the harness: killed by `timeout` or a CI runner, the harness gives no chance
to clean up, and an orphaned server keeps its GPU memory (seen on an H100: a transformers serve
left holding 69 GB made the next run OOM).
"""

from __future__ import annotations

import atexit
import ctypes
import multiprocessing
import multiprocessing.context
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

PR_SET_PDEATHSIG = 1


def _prctl():
    """libc's prctl, looked up once in the parent: between fork and exec the child should do as
    little as it can (no library loading, which takes locks another thread may have held)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except OSError:
        return None


_PRCTL = _prctl()


def die_with_parent() -> None:
    """A `preexec_fn`: the kernel sends SIGTERM to this process when the process that started
    it dies, however it dies (Linux; elsewhere a no-op)."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def terminate_as_interrupt() -> None:
    """SIGTERM ends this process as Ctrl-C does: cleanup runs (servers stop, the run is marked
    interrupted and its report written) instead of dying mid-write. Only the first SIGTERM: GNU
    `timeout` signals the process and then its whole group, and a second interrupt raised inside
    pytest's interrupt handling would cut that cleanup short (seen on an H200)."""
    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt(f"terminated (signal {signum})")

    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, handler)


# torch's CUDA availability check through NVML instead of the CUDA runtime: the runtime's check
# initializes the driver, and a process forked after that cannot use CUDA. The fork server and
# this process both import torch with it set.
FORK_SAFE_ENV = {"PYTORCH_NVML_BASED_CUDA_CHECK": "1"}
PRELOAD_ENV = "BENCH_PRELOAD"  # what the fork server imports (bench.telemetry.preload reads it)
_preloading: tuple[str, ...] | None = None  # what this process's fork server imports, set by the first call


def preloading_context(modules: Sequence[str] = ()) -> multiprocessing.context.BaseContext:
    """The context children are started from: a fork server that has imported `modules` where the
    platform has one, a spawning context elsewhere. The first call decides what the server
    preloads (a process has one server); `warm_up` starts it early so that its imports overlap
    other work."""
    global _preloading
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    if _preloading is None:  # the server reads both from the environment it starts with
        _preloading = tuple(modules)
        os.environ.update({**FORK_SAFE_ENV, PRELOAD_ENV: ",".join(modules)})
        context.set_forkserver_preload(["bench.telemetry.preload"])
    return context


def _nothing() -> None:
    """A child that only shows the fork server is serving."""


def wait_for_server(context: multiprocessing.context.BaseContext) -> float:
    """Seconds until the fork server has finished its imports and forks (at once when it has)."""
    started = time.perf_counter()
    child = context.Process(target=_nothing)
    child.start()
    child.join()
    return time.perf_counter() - started


_server_ready: threading.Event | None = None  # set once the server `warm_up` started serves


def warm_up(context: multiprocessing.context.BaseContext) -> None:
    """Start the fork server now (its preloading runs in the background) rather than at the first
    child, and note when it serves (`server_ready`)."""
    global _server_ready
    if context.get_start_method() != "forkserver" or _server_ready is not None:
        return
    from multiprocessing import forkserver

    forkserver.ensure_running()
    _server_ready = ready = threading.Event()
    threading.Thread(target=lambda: (wait_for_server(context), ready.set()), daemon=True,
                     name="fork-server-watch").start()


def server_ready() -> bool:
    """Whether the fork server has finished its imports: a child forked before that waits for them,
    one in a fresh interpreter does not. True where `warm_up` started no server (nothing known to
    wait for)."""
    return _server_ready is None or _server_ready.is_set()


def without_waiting(context: multiprocessing.context.BaseContext) -> multiprocessing.context.BaseContext:
    """`context`, or while its fork server is still importing, a fresh interpreter's: for a child
    that needs only torch (measuring the GPU's ceilings), which should not wait for the engine."""
    return context if server_ready() else fresh_context()


def fresh_context() -> multiprocessing.context.BaseContext:
    """Children in a fresh interpreter, importing what they need themselves: for a child that needs
    less than the fork server imports, while the server is still importing it."""
    return multiprocessing.get_context("spawn")


def start_python(context: multiprocessing.context.BaseContext, target: Callable[..., object], args: tuple,
                 log: Path, *, new_session: bool = False) -> multiprocessing.process.BaseProcess:
    """`target(*args)` in a new process, its output in `log`, this process's environment and
    directory as they are now (the fork server's are those of when it started), killed when its
    parent dies. `new_session`: its own process group, so that stopping it stops what it starts."""
    log.touch()  # there to read even if the child dies before it writes
    process = context.Process(target=_child_main, args=(target, args, str(log), dict(os.environ), os.getcwd(),
                                                        new_session), daemon=False)
    process.start()
    return process


def last_line(log: Path, limit: int = 300) -> str:
    """The last non-blank line a child wrote to its log: what it said before it failed ("" if none)."""
    try:
        lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:limit] if lines else ""


def _child_main(target: Callable[..., object], args: tuple, log: str, environ: dict, cwd: str,
                new_session: bool) -> None:
    die_with_parent()
    if new_session:
        os.setsid()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda._is_in_bad_fork():
        raise SystemExit("CUDA was initialized in the process this one was forked from, so it cannot use CUDA: "
                         "a preloaded library initialized it; report this with the library's name")
    atexit._clear()  # what the fork server registered is the server's to run
    try:
        target(*args)
    finally:
        _run_exit_handlers()


EXIT_HANDLERS_TIMEOUT_S = 120.0


def _run_exit_handlers() -> None:
    """The exit handlers this process registered, run as a process of its own would at its end: a
    forked child ends in `os._exit`, which runs none. Unsloth saves its compilation cache in one
    (its "mega-cache", which the next process loads instead of compiling again); torch shuts its
    compile workers down in another. One that hangs ends the process after EXIT_HANDLERS_TIMEOUT_S."""
    watchdog = threading.Timer(EXIT_HANDLERS_TIMEOUT_S, os._exit, (1,))
    watchdog.daemon = True
    watchdog.start()
    try:
        atexit._run_exitfuncs()
    finally:
        watchdog.cancel()


# The pytest plugins of a child's session: those the suites use; whatever else the environment
# installs is not loaded, and pytest's unraisable-exception hunt is off. A child paid for both at
# its end, each time: hypothesis's plugin imports hypothesis (1.4 s on the 2-core CPU machine),
# and the hunt runs five full garbage collections over torch's heap (1.4 s).
CHILD_PLUGINS = ("bench.harness.plugin", "pytest_benchmark.plugin", "pytest_timeout", "no:unraisableexception")


def run_pytest(args: list[str]) -> None:
    """A child's pytest session (the target of an isolated child)."""
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    import pytest

    raise SystemExit(int(pytest.main([arg for name in CHILD_PLUGINS for arg in ("-p", name)] + args)))
