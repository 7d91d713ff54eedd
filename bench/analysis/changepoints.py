"""Change points over a whole history of runs: E-divisive means, as MongoDB's performance CI and
Apache Otava (formerly Hunter) find them. Pure: lists in, change points out.

Comparing each run with the one before sees a step only where two neighbours straddle it, and on
noisy runs (a CPU runner's runs move 5-15% from one to the next) calls every other wiggle a step.
E-divisive looks at the whole series of a (metric, case): it splits the series where the energy
distance between the two sides, weighted by their sizes, is largest, tests that split by
permuting the series (a split as large arises by chance less than `alpha` of the time), and splits
each side again until no split passes. Each run contributes one value, the geometric mean of its
samples, on the log scale, so a 10% slowdown is the same step at any magnitude. A split is kept only
where the two sides' medians also differ by more than `min_change` (5%): a real but tiny shift is
not worth a reader's time, and the site says what it ignored.

`alpha` is the false-alarm rate of one series; a site over many series expects about `alpha` times
their number of false change points. Measured on synthetic histories with the noise of the CPU
chains, against the binary segmentation it replaces: tests/test_changepoints.py and the README.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALPHA = 0.01
MIN_CHANGE = 0.05
MIN_SIZE = 3  # runs on each side of a split: fewer cannot tell a step from an outlier
PERMUTATIONS = 199
SEED = 20261205  # permutation tests are deterministic: the same history gives the same change points


@dataclass(frozen=True)
class ChangePoint:
    index: int  # the first run after the change
    before: float  # median of the segment before (in the series' own unit)
    after: float  # median of the segment after
    p_value: float

    @property
    def ratio(self) -> float:
        return self.after / self.before

    def direction(self, better: str) -> str:
        """'regression' when the change makes the metric worse, else 'improvement'."""
        worse = self.ratio > 1 if better == "lower" else self.ratio < 1
        return "regression" if worse else "improvement"


def _energy_statistic(x: np.ndarray) -> tuple[int, float]:
    """The split tau (MIN_SIZE <= tau <= n - MIN_SIZE) maximizing the E-divisive statistic of
    Matteson and James (2014) with exponent 1, and its value; (0, 0.0) when the series is too short."""
    n = len(x)
    if n < 2 * MIN_SIZE:
        return 0, 0.0
    d = np.abs(x[:, None] - x[None, :])
    s = np.zeros((n + 1, n + 1))
    s[1:, 1:] = np.cumsum(np.cumsum(d, axis=0), axis=1)  # s[i, j] = sum of d[:i, :j]
    tau = np.arange(MIN_SIZE, n - MIN_SIZE + 1)
    m = n - tau
    left = s[tau, tau]  # within the first tau runs
    right = s[n, n] - 2 * s[tau, n] + s[tau, tau]  # within the rest
    between = s[tau, n] - s[tau, tau]  # first tau against the rest
    q = tau * m / n * (2 * between / (tau * m) - left / tau ** 2 - right / m ** 2)
    best = int(np.argmax(q))
    return int(tau[best]), float(q[best])


def _significance(x: np.ndarray, q: float, rng: np.random.Generator, permutations: int) -> float:
    """Permutation p-value of a split statistic at least as large as `q` in a series without a change."""
    exceed = sum(_energy_statistic(rng.permutation(x))[1] >= q for _ in range(permutations))
    return (exceed + 1) / (permutations + 1)


def change_points(values: list[float], alpha: float = ALPHA, min_change: float = MIN_CHANGE,
                  permutations: int = PERMUTATIONS) -> list[ChangePoint]:
    """The change points of one series of positive values (one per run, in run order)."""
    x = np.log(np.asarray(values, dtype=float))
    rng = np.random.default_rng(SEED)
    splits: list[tuple[int, float]] = []
    segments = [(0, len(x))]
    while segments:
        start, end = segments.pop()
        tau, q = _energy_statistic(x[start:end])
        if tau == 0:
            continue
        p = _significance(x[start:end], q, rng, permutations)
        if p > alpha:
            continue
        splits.append((start + tau, p))
        segments += [(start, start + tau), (start + tau, end)]
    bounds = sorted(s for s, _ in splits)
    p_of = dict(splits)
    edges = [0, *bounds, len(x)]
    points = []
    for i, split in enumerate(bounds):
        before = float(np.exp(np.median(x[edges[i]:split])))
        after = float(np.exp(np.median(x[split:edges[i + 2]])))
        if abs(after / before - 1) >= min_change:
            points.append(ChangePoint(split, before, after, p_of[split]))
    return points
