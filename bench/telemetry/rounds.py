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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

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


class RoundThread:
    """Runs a case's rounds on a thread of its own on a GPU, in place on the CPU.

    A generation hosted by pytest's test call decoded about 8% slower than the same generation on a
    thread started inside that test (25 interleaved rounds of the 20B replica on two H100s: 1.088,
    95% CI 1.036-1.143); that thread's rounds matched rounds run outside pytest, on a thread (1.042,
    0.986-1.101) or on the main thread (1.052, 0.997-1.110), as a user's plain script runs them.
    Which part of the test call costs it is not known; none of pytest's optional plugins is it
    (docs/measurements/pytest-hosting.md). One thread serves all of a case's rounds, the warm-up
    included: a round on a fresh thread gave its first token later, and what a new thread pays once
    belongs in the warm-up. Not on the CPU: there, with two intra-op threads, a round on a new
    thread decoded slower than on the main thread (330-400 against 470-590 tokens/s for the tiny
    model on two cores).
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> RoundThread:
        if self.device.startswith("cuda"):
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="timed-rounds", initializer=_use_device,
                                            initargs=(self.device,))
        return self

    def __call__(self, work: Callable[[], T]) -> T:
        return work() if self._pool is None else self._pool.submit(work).result()

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            # after an interrupt, don't wait for the round in flight to finish
            self._pool.shutdown(wait=exc[0] is None, cancel_futures=True)
            self._pool = None


def _use_device(device: str) -> None:
    """CUDA's current device is per thread: a new one starts on device 0."""
    import torch

    torch.cuda.set_device(torch.device(device))
