"""Repeating a timed callable: a fixed number of rounds through pytest-benchmark, or adaptive rounds.

pytest-benchmark runs a pedantic target once, untimed, under --benchmark-disable (and turns
itself off under xdist). The suites' own synchronizing timers need every round either way, so
rounds are run here by hand in that case, with the same warm-up and setup semantics.

Adaptive rounds (`Precision`) do what pytest-benchmark's min_rounds/max_time do, with a stopping
rule on the figure itself: after the minimum rounds, keep going until the 95% interval of the
samples' (geometric) mean is within the target width or the time cap is spent. A stable case stops
at its minimum; a noisy one gets the samples it needs, up to the cap. The warm-up never counts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The interval a case's rounds aim for: +-2% of the mean, comfortably inside the gate's 5%.
TARGET_HALF_WIDTH = 0.02


@dataclass(frozen=True)
class Precision:
    samples: Callable[[], list[float]]  # the case's timed samples so far (positive)
    max_time_s: float  # time cap of the timed rounds
    half_width: float = TARGET_HALF_WIDTH
    max_rounds: int = 200


def half_width(samples: list[float]) -> float:
    """Relative half-width of the 95% t-interval of the geometric mean; inf under two samples."""
    from scipy import stats

    logs = [math.log(s) for s in samples if s > 0]
    n = len(logs)
    if n < 2:
        return math.inf
    mean = sum(logs) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / (n - 1))
    return math.expm1(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n))


def run_rounds(benchmark: Any, target: Callable[[], None], *, rounds: int, warmup_rounds: int = 0,
               setup: Callable[[], None] | None = None, until: Precision | None = None) -> int:
    """Returns the number of timed rounds run (warm-up not counted)."""
    if until is None and benchmark is not None and not getattr(benchmark, "disabled", False):
        benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1)
        return rounds

    def one() -> None:
        if setup is not None:
            setup()
        target()

    for _ in range(warmup_rounds):
        one()
    started, done = time.perf_counter(), 0
    while done < rounds or (until is not None and done < until.max_rounds
                            and time.perf_counter() - started < until.max_time_s
                            and half_width(until.samples()) > until.half_width):
        one()
        done += 1
    return done
