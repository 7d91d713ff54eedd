"""Pure statistics over plain lists: summaries, the one ratio estimator a comparison uses, the
regression verdict and Holm's control of a whole run's false alarms (change points over a history
are `bench.analysis.changepoints`). No I/O, no torch, no pytest.

Every comparison is a ratio new/base on the log scale, where timings are closer to normal and a
slowdown is a shift. The point, the interval and the base/new figures shown beside them come from
one estimator, so a reader never sees a change whose sign contradicts its columns:

- two sides with samples: the ratio of geometric means, Welch's t on the logs (its few degrees of
  freedom say how little three samples know);
- runs repeated in rounds (`bench ab`): each run's geometric mean is one observation, the rounds
  are paired (A and B of one round ran minutes apart), and the spread of the paired differences,
  pooled over the cases of one metric, is the noise: between-run drift is in it by construction;
- a metric with its own interval (retained throughput): that interval, on the log scale;
- a single reading: no interval at all, judged by a stated tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

REGRESSION, IMPROVEMENT, UNCHANGED, INCONCLUSIVE = "regression", "improvement", "unchanged", "inconclusive"
DEFAULT_THRESHOLD = 0.05
ALPHA = 0.05  # run-level false-alarm rate the gate controls (Holm over the gating pairs)
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    median: float
    stdev: float
    min: float
    max: float
    q1: float
    q3: float

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def cv(self) -> float:
        """Coefficient of variation: the noise of a timed metric, relative to its mean."""
        return self.stdev / self.mean if self.mean else math.nan


def summarize(values: list[float]) -> Summary:
    if not values:
        raise ValueError("no values to summarize")
    a = np.asarray(values, dtype=float)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return Summary(n=len(a), mean=float(a.mean()), median=float(med),
                   stdev=float(a.std(ddof=1)) if len(a) > 1 else 0.0,
                   min=float(a.min()), max=float(a.max()), q1=float(q1), q3=float(q3))


def geometric_mean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(np.asarray(values, dtype=float)))))


def mean_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float | None, float | None]:
    """A run's figure with its interval: the geometric mean of its samples and the t interval of the
    mean on the log scale; no interval for a single reading or samples that do not vary."""
    from scipy import stats as st

    logs = np.log(np.asarray(values, dtype=float))
    centre = float(np.exp(logs.mean()))
    if len(logs) < 2 or not logs.std():
        return centre, None, None
    half = float(st.t.ppf(0.5 + confidence / 2, len(logs) - 1)) * float(logs.std(ddof=1)) / math.sqrt(len(logs))
    return centre, float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half))


@dataclass(frozen=True)
class Estimate:
    """new/base as one estimator gives it: the point, the statistic of each side (what the base
    and new columns show), and the standard error of the log ratio with its degrees of freedom.
    `se` is None for a single reading: there is no interval, only a tolerance."""

    ratio: float
    base: float
    new: float
    se: float | None
    df: float | None
    method: str
    n_base: int
    n_new: int

    @property
    def single(self) -> bool:
        """No interval to judge by: one reading a side, or samples that do not vary at all (an
        allocator's exact peak): judged by a tolerance, outside the family Holm controls."""
        return not self.se

    def quantile(self, tail: float) -> float:
        """The critical value leaving `tail` probability in one tail (t, or normal without df)."""
        from scipy import stats as st

        if self.df is None or math.isinf(self.df):
            return float(st.norm.ppf(1 - tail))
        return float(st.t.ppf(1 - tail, self.df))

    def interval(self, tail: float) -> tuple[float, float]:
        """The two-sided interval leaving `tail` in each tail (tail 0.025: the 95% interval)."""
        if not self.se:
            return self.ratio, self.ratio
        half = self.quantile(tail) * self.se
        log_ratio = math.log(self.ratio)
        return math.exp(log_ratio - half), math.exp(log_ratio + half)

    def p_beyond(self, log_bound: float, upward: bool) -> float:
        """One-sided p-value that the log ratio lies beyond `log_bound` (above it when `upward`)."""
        from scipy import stats as st

        if not self.se:
            return 1.0
        t = (math.log(self.ratio) - log_bound) / self.se * (1 if upward else -1)
        return float(st.norm.sf(t) if self.df is None or math.isinf(self.df) else st.t.sf(t, self.df))


def welch_log(base: list[float], new: list[float]) -> Estimate:
    """Ratio of geometric means, Welch's t on the logs. Both sides need two or more positive values."""
    x, y = np.log(np.asarray(base, dtype=float)), np.log(np.asarray(new, dtype=float))
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(vx + vy)
    denominator = (vx**2 / (len(x) - 1) if vx else 0.0) + (vy**2 / (len(y) - 1) if vy else 0.0)
    df = (vx + vy) ** 2 / denominator if denominator else math.inf
    return Estimate(math.exp(y.mean() - x.mean()), math.exp(x.mean()), math.exp(y.mean()), se, df,
                    "geometric means, Welch t", len(x), len(y))


def single_reading(base: float, new: float) -> Estimate:
    """One value a side: the plain ratio (or 1 + difference where a side is zero: a loss delta,
    a boolean), no interval."""
    if base > 0 and new > 0:
        ratio, method = new / base, "single reading"
    else:
        ratio, method = 1 + (new - base), "single reading, 1 + difference (a side is zero)"
    return Estimate(ratio, base, new, None, None, method, 1, 1)


def from_intervals(base: tuple[float, float, float], new: tuple[float, float, float]) -> Estimate:
    """Two values that carry their own 95% intervals (value, low, high): their ratio, with the
    log-scale errors read off the intervals and combined (normal approximation)."""
    def se(value: float, low: float, high: float) -> float:
        return (math.log(high) - math.log(low)) / (2 * Z95) if low > 0 and high > low else 0.0

    combined = math.sqrt(se(*base) ** 2 + se(*new) ** 2)
    return Estimate(new[0] / base[0], base[0], new[0], combined or None, None,
                    "each run's own 95% interval", 1, 1)


def round_differences(base_runs: list[list[float]], new_runs: list[list[float]]) -> list[float]:
    """Per round, the log of new's geometric mean over base's: one paired observation each."""
    return [math.log(geometric_mean(n)) - math.log(geometric_mean(b)) for b, n in zip(base_runs, new_runs)]


def paired_rounds(base_runs: list[list[float]], new_runs: list[list[float]],
                  pooled_var: float | None = None, pooled_df: float | None = None) -> Estimate:
    """Runs repeated in rounds A B, B A, ...: round i's log difference of geometric means is one
    paired observation; the estimate is their mean. `pooled_var`/`pooled_df`: the variance of a
    paired difference pooled over the cases of the metric (`pooled_round_variance`), which gives
    a single case the degrees of freedom of all of them."""
    d = np.asarray(round_differences(base_runs, new_runs))
    n = len(d)
    var, df = (pooled_var, pooled_df) if pooled_var is not None else (
        (float(d.var(ddof=1)), n - 1.0) if n > 1 else (None, None))
    se = math.sqrt(var / n) if var is not None else None
    base = geometric_mean([geometric_mean(r) for r in base_runs])
    new = geometric_mean([geometric_mean(r) for r in new_runs])
    return Estimate(math.exp(float(d.mean())), base, new,
                    se, df, f"{n} paired rounds" + (", variance pooled over the metric's cases" if pooled_var is not None
                                                    else ""), n, n)


def pooled_round_variance(differences: list[list[float]]) -> tuple[float, float] | None:
    """Variance of a paired log difference pooled over cases: (variance, degrees of freedom)."""
    ss, df = 0.0, 0
    for d in differences:
        if len(d) > 1:
            a = np.asarray(d, dtype=float)
            ss += float(((a - a.mean()) ** 2).sum())
            df += len(a) - 1
    return (ss / df, float(df)) if df else None


def between_case_variance(estimates: list[Estimate]) -> tuple[float, float] | None:
    """The variance a metric's cases add between two runs beyond their own samples' (tau^2, df).

    On a shared or virtual machine each case of a run lands in its own stretch of machine state:
    whole cases move by 10-20% between runs while their samples agree within 2%. Cases of one metric
    move independently of one another, so the spread of their log ratios, less what their samples
    explain, estimates that between-run noise from the two runs themselves. Needs three cases."""
    if len(estimates) < 3:
        return None
    logs = np.log([e.ratio for e in estimates])
    tau2 = max(0.0, float(logs.var(ddof=1)) - float(np.mean([e.se ** 2 for e in estimates])))
    return tau2, len(estimates) - 1.0


def with_between_run_noise(est: Estimate, tau2: float, df_tau: float, cases: int) -> Estimate:
    """A case's estimate with the metric's between-run variance added (Satterthwaite's df)."""
    within = est.se ** 2
    se2 = within + tau2
    parts = (within ** 2 / est.df if est.df and not math.isinf(est.df) else 0.0) + (tau2 ** 2 / df_tau if tau2 else 0.0)
    df = se2 ** 2 / parts if parts else est.df
    return Estimate(est.ratio, est.base, est.new, math.sqrt(se2), df,
                    f"{est.method}, plus between-run noise from the spread of the metric's {cases} cases",
                    est.n_base, est.n_new)


def across_cases(estimates: list[Estimate]) -> Estimate:
    """All cases of a metric as one: the geometric mean of their ratios, with the spread of the
    cases as its noise (C - 1 df). A change that moves every case, as most regressions do, shows
    here with the noise of one case divided by the square root of their number."""
    logs = np.log([e.ratio for e in estimates])
    n = len(logs)
    return Estimate(math.exp(float(logs.mean())), geometric_mean([e.base for e in estimates]),
                    geometric_mean([e.new for e in estimates]), float(logs.std(ddof=1)) / math.sqrt(n), n - 1.0,
                    f"all {n} cases: geometric mean of their ratios, their spread as the noise", n, n)


def across_cases_rounds(estimates: list[Estimate], differences: list[list[float]]) -> Estimate:
    """All cases of a metric as one, from paired rounds: each round's mean log difference over the
    cases is one observation, so a drift that moves every case of a round alike is in the noise
    (R - 1 df), as it must be when both versions did not run at the same moment."""
    per_round = np.asarray(differences, dtype=float).mean(axis=0)  # cases x rounds -> rounds
    n = len(per_round)
    se = float(per_round.std(ddof=1)) / math.sqrt(n) if n > 1 else None
    return Estimate(math.exp(float(per_round.mean())), geometric_mean([e.base for e in estimates]),
                    geometric_mean([e.new for e in estimates]), se,
                    n - 1.0 if n > 1 else None,
                    f"all {len(differences)} cases, {n} paired rounds: each round's mean change is one observation",
                    n, n)


def times_worse(ratio: float, better: str) -> float:
    """A ratio new/base as "how many times worse" (above 1 is worse)."""
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher', not {better!r}")
    if better == "lower":
        return ratio
    return 1 / ratio if ratio > 0 else math.inf  # a rate or a pass (1) that fell to zero: infinitely worse


def worse_bounds(low: float, high: float, better: str) -> tuple[float, float]:
    """An interval of new/base as an interval of "how many times worse"."""
    return tuple(sorted((times_worse(low, better), times_worse(high, better))))


def verdict(low: float, high: float, better: str, threshold: float, point: float | None = None) -> str:
    """Regression or improvement when the whole interval lies beyond the threshold; with `point`
    (an estimate that sees the noise between runs, paired rounds), when the interval excludes no
    change and the point estimate lies beyond the threshold (asv's rule: significant, and by more
    than the factor). Unchanged when the interval lies within the threshold; inconclusive otherwise."""
    worse_lo, worse_hi = worse_bounds(low, high, better)
    if point is None:
        regressed, improved = worse_lo > 1 + threshold, worse_hi < 1 / (1 + threshold)
    else:
        worse = times_worse(point, better)
        regressed = worse_lo > 1 and worse > 1 + threshold
        improved = worse_hi < 1 and worse < 1 / (1 + threshold)
    if regressed:
        return REGRESSION
    if improved:
        return IMPROVEMENT
    if worse_hi <= 1 + threshold and worse_lo >= 1 / (1 + threshold):
        return UNCHANGED
    return INCONCLUSIVE


def single_verdict(ratio: float, better: str, tolerance: float | None) -> str:
    """A single reading against its tolerance; one with no stated tolerance is not judged."""
    if tolerance is None:
        return INCONCLUSIVE
    return verdict(ratio, ratio, better, tolerance)


def p_worse(est: Estimate, better: str, threshold: float) -> float:
    """One-sided p-value of "worse by more than the threshold"."""
    bound = math.log(1 + threshold)
    return est.p_beyond(bound if better == "lower" else -bound, upward=better == "lower")


def holm_tails(pvalues: list[float], alpha: float = ALPHA) -> list[float]:
    """Holm's step-down over one family, as the one-sided level each test is judged at.

    The k-th smallest p-value is tested at alpha / (m - k + 1) while every smaller one was
    rejected; from the first that is not, every remaining test keeps that level. An interval drawn
    at its test's level then lies beyond the threshold exactly when Holm calls a regression, so
    the interval shown and the verdict never disagree, and the chance of any false regression in
    the whole family is at most alpha.
    """
    m = len(pvalues)
    tails = [0.0] * m
    level = None
    for k, i in enumerate(sorted(range(m), key=lambda j: pvalues[j])):
        if level is None:
            step = alpha / (m - k)
            if pvalues[i] > step:
                level = step
            tails[i] = step
        else:
            tails[i] = level
    return tails
