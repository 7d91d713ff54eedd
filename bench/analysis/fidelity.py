"""Whether the harness's figures are a plain script's: pure arithmetic over the cross-check's repeats.

The cross-check runs a plain script and the harness's own cases alternately on one host (plain,
harness, plain, ...). Each repeat gives each side one run of samples; the ratio harness / plain is
the project's paired-rounds estimator (`stats.paired_rounds`): per repeat the log of the harness's
geometric mean over the plain script's, their mean, and a t interval from their spread, so drift
between repeats is in the interval rather than in the ratio. Against the figure's tolerance (the
metric registry's `fidelity_tolerance`: 10% for timings, 5% for memory) a figure

- agrees: the whole 95% interval lies within the tolerance;
- is a finding: the ratio lies outside it and the interval leaves out 1 (the harness does not
  measure what a user would, and the repeats show it is not chance);
- is unresolved: anything between (more repeats would tell).

A ratio outside the tolerance whose interval still holds 1 is unresolved, not a finding: on a host
whose repeats scatter (sd of the per-repeat log ratio 0.2-0.3, as the 2-core CPU machine's decode
did) the ratio alone called 26-57% of the figures of an unchanged harness findings, the interval
rule 4-5%, the 95% level (synthetic repeats, 3 and 5 of them; `tests/test_fidelity.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.analysis.stats import paired_rounds

AGREES, FINDING, UNRESOLVED = "agrees", "finding", "unresolved"
FIDELITY_METRIC = "fidelity_ratio"  # the records a cross-check writes: one per figure
POWER = 0.8  # the chance that the suggested repeats resolve a figure, were it as measured
MOST_REPEATS = 30  # more than this is no suggestion a user would act on: the host is too noisy


@dataclass(frozen=True)
class FigureCheck:
    """One figure (a metric of one case) measured by both sides: per repeat, each side's samples."""

    metric: str
    suite: str
    params: dict
    harness: list[list[float]]
    plain: list[list[float]]
    tolerance: float

    def __post_init__(self) -> None:
        if len(self.harness) != len(self.plain) or not self.harness:
            raise ValueError(f"{self.metric}: each repeat needs samples of both sides "
                             f"({len(self.harness)} harness, {len(self.plain)} plain)")

    @property
    def repeats(self) -> int:
        return len(self.harness)

    @property
    def interval(self) -> tuple[float, float, float]:
        """(ratio, low, high): harness / plain with its 95% interval; with one repeat, or repeats
        that agree exactly, the interval is the ratio itself."""
        estimate = paired_rounds(self.plain, self.harness)
        low, high = estimate.interval(0.025)
        return estimate.ratio, low, high

    @property
    def per_repeat(self) -> list[float]:
        """Each repeat's ratio of geometric means: the observations the interval is made of."""
        return [paired_rounds([p], [h]).ratio for p, h in zip(self.plain, self.harness)]

    @property
    def verdict(self) -> str:
        ratio, low, high = self.interval
        return judge(ratio, low, high, self.tolerance, self.repeats)


def judge(ratio: float, low: float, high: float, tolerance: float, repeats: int) -> str:
    """A single repeat has no interval to judge by: its ratio outside the tolerance is a finding,
    inside it unresolved."""
    within = 1 - tolerance <= ratio <= 1 + tolerance
    if not within:
        return FINDING if repeats == 1 or not low <= 1 <= high else UNRESOLVED
    if repeats > 1 and 1 - tolerance <= low and high <= 1 + tolerance:
        return AGREES
    return UNRESOLVED


def repeats_to_resolve(per_repeat: list[float], tolerance: float, most: int = MOST_REPEATS) -> int | None:
    """How many repeats an unresolved figure needs for a verdict, were its ratio and the scatter of
    its repeats what this cross-check measured: the least n whose interval, widened to give the
    verdict an 80% chance, clears what it must clear (the nearer edge of the tolerance for a ratio
    within it, 1 for a ratio beyond it). As rough as a spread from a few repeats is: a suggestion
    for `--crosscheck-repeats`, not a promise. None with fewer than two repeats, repeats without
    scatter, a ratio on an edge of the tolerance, or more than `most` needed."""
    from scipy import stats as st

    logs = np.log(np.asarray(per_repeat, dtype=float))
    if len(logs) < 2:
        return None
    centre, spread = float(logs.mean()), float(logs.std(ddof=1))
    if not spread:
        return None
    low, high = math.log(1 - tolerance), math.log(1 + tolerance)
    room = min(centre - low, high - centre) if low <= centre <= high else abs(centre)
    for n in range(2, most + 1):
        if (st.t.ppf(0.975, n - 1) + st.t.ppf(POWER, n - 1)) * spread / math.sqrt(n) < room:
            return n
    return None
