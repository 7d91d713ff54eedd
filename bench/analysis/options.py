"""Options of the comparison, parsed in one place for the pytest plugin and the `bench` CLI, so
that neither imports the other."""

from __future__ import annotations

from bench.analysis.stats import DEFAULT_THRESHOLD
from bench.errors import BenchError

THRESHOLD_DEFAULT = f"{DEFAULT_THRESHOLD:.0%}"  # the --threshold default, as the user would type it


def parse_threshold(text: str) -> float:
    """'5%' or '0.05' -> 0.05."""
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise BenchError(f"--threshold {text}: give a percentage like 5% or a fraction like 0.05") from None
    if not 0 <= value < 10:
        raise BenchError(f"--threshold {text}: out of range")
    return value
