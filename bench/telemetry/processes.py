"""Processes the harness starts (an isolated child, a server) must not outlive it: killed by
`timeout` or a CI runner, the harness gives no chance to clean up, and an orphaned server keeps
its GPU memory (seen on an H100: a transformers serve left holding 69 GB made the next run OOM)."""

from __future__ import annotations

import ctypes
import signal
import sys

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
