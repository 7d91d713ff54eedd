"""Test-only fault hooks, in one place, so the harness's handling of failures and the comparison's
detection power are proven on any machine. Each is an environment variable the harness's own tests
(and `bench errorrate`) set; a run made with any of them set records it in its manifest
(`test_hooks`), and `bench baseline save` refuses such a run.

- BENCH_TEST_OOM_AT_BATCH=N: every generate call with exactly N sequences raises
  torch.OutOfMemoryError, as a GPU at its memory limit does (before any work: outside the timing).
- BENCH_TEST_CRASH_AT_BATCH=N: the process kills itself with SIGSEGV there instead.
- BENCH_TEST_SLOWDOWN=0.25: every timed training step and generated token is stretched by 25% of
  its own duration, by spinning on the clock. This one must sit inside the timed region: it is the
  known regression that a comparison is asked to find.
"""

from __future__ import annotations

import os
import time

OOM_ENV = "BENCH_TEST_OOM_AT_BATCH"
CRASH_ENV = "BENCH_TEST_CRASH_AT_BATCH"
SLOWDOWN_ENV = "BENCH_TEST_SLOWDOWN"
HOOKS = (OOM_ENV, CRASH_ENV, SLOWDOWN_ENV)
# Stretches longer than this sleep instead of spinning: a wake-up's cost is then lost in the length,
# and a case made to hang (the tests' 200x) does not take a core from the tests beside it.
SLEEP_ABOVE_S = 0.1


def active() -> dict[str, str]:
    """The hooks set in this process's environment, for the manifest."""
    return {name: os.environ[name] for name in HOOKS if os.environ.get(name)}


def before_generate(batch_size: int) -> None:
    crash = os.environ.get(CRASH_ENV)
    if crash and crash.isdigit() and batch_size == int(crash):
        import signal

        os.kill(os.getpid(), signal.SIGSEGV)  # what a poisoned CUDA context or a bad kernel does to a process
    limit = os.environ.get(OOM_ENV)
    if limit and limit.isdigit() and batch_size == int(limit):
        import torch

        raise torch.OutOfMemoryError(f"CUDA out of memory (injected by {OOM_ENV}={limit} at batch size {batch_size})")


def slowdown_factor() -> float:
    try:
        return max(0.0, float(os.environ.get(SLOWDOWN_ENV, "0")))
    except ValueError:
        return 0.0


def stretch(elapsed_s: float) -> None:
    """Busy for `slowdown_factor() * elapsed_s`; nothing when the hook is off.

    Spinning, not sleeping (up to SLEEP_ABOVE_S): a real regression is more work, and a sleep of a
    millisecond between tokens lets the core idle and the work after it run slower too. Sleeping, a
    10% stretch slowed the tiny model's decode by 15% on the 2-core CPU (45 rounds) and an H100's by
    19% (5 rounds)."""
    factor = slowdown_factor()
    if factor > 0 and elapsed_s > 0:
        if factor * elapsed_s > SLEEP_ABOVE_S:
            time.sleep(factor * elapsed_s)
            return
        until = time.perf_counter() + factor * elapsed_s
        while time.perf_counter() < until:
            pass
