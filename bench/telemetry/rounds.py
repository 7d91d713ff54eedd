"""Repeating a timed callable through pytest-benchmark, or by hand where it is switched off.

pytest-benchmark runs a pedantic target once, untimed, under --benchmark-disable (and turns
itself off under xdist). The suites' own synchronizing timers need every round either way, so
rounds are run here by hand in that case, with the same warm-up and setup semantics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def run_rounds(benchmark: Any, target: Callable[[], None], *, rounds: int, warmup_rounds: int = 0,
               setup: Callable[[], None] | None = None) -> None:
    if benchmark is not None and not getattr(benchmark, "disabled", False):
        benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1)
        return
    for _ in range(warmup_rounds + rounds):
        if setup is not None:
            setup()
        target()
