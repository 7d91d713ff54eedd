"""Test-only fault injection, so the harness's handling of failures is proven on any machine.

BENCH_TEST_OOM_AT_BATCH=N makes every generate call with exactly N sequences raise
torch.OutOfMemoryError, as a GPU at its memory limit does; BENCH_TEST_CRASH_AT_BATCH=N kills the
process with SIGSEGV there instead. Set only by the harness's own tests;
the manifest records it when set.
"""

from __future__ import annotations

import os

OOM_ENV = "BENCH_TEST_OOM_AT_BATCH"
CRASH_ENV = "BENCH_TEST_CRASH_AT_BATCH"


def maybe_out_of_memory(batch_size: int) -> None:
    crash = os.environ.get(CRASH_ENV)
    if crash and crash.isdigit() and batch_size == int(crash):
        import signal

        os.kill(os.getpid(), signal.SIGSEGV)  # what a poisoned CUDA context or a bad kernel does to a process
    limit = os.environ.get(OOM_ENV)
    if limit and limit.isdigit() and batch_size == int(limit):
        import torch

        raise torch.OutOfMemoryError(f"CUDA out of memory (injected by {OOM_ENV}={limit} at batch size {batch_size})")
