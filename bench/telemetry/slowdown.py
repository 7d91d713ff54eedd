"""A test-only hook that makes timed work really slower, to measure how often a comparison
misses a known regression. BENCH_TEST_SLOWDOWN=0.25 stretches every timed training step and
every generated token by 25% of its own duration (a sleep after the work, inside the timed
region). Never set it outside such a measurement: it is recorded in the manifest when set."""

from __future__ import annotations

import os
import time

ENV = "BENCH_TEST_SLOWDOWN"


def factor() -> float:
    try:
        return max(0.0, float(os.environ.get(ENV, "0")))
    except ValueError:
        return 0.0


def stretch(elapsed_s: float) -> None:
    """Sleep `factor() * elapsed_s`; nothing when the hook is off."""
    f = factor()
    if f > 0 and elapsed_s > 0:
        time.sleep(f * elapsed_s)
