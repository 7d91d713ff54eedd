"""Pure statistics over plain lists: summaries, the bootstrap ratio of medians, the regression
verdict and step detection for history views. No I/O, no torch, no pytest."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

REGRESSION, IMPROVEMENT, UNCHANGED, INCONCLUSIVE = "regression", "improvement", "unchanged", "inconclusive"
DEFAULT_THRESHOLD = 0.05
# Single-value metrics have no spread to build an interval from: they are compared against a
# fixed relative tolerance instead. Losses on the CPU are deterministic; on a GPU, kernels with
# atomics make them wobble by well under 2%.
# Memory peaks are single readings too: torch's allocator is exact, NVML and RSS move by a few
# percent with allocator and driver state. One-off timings (a cold load, the first generate)
# have no repeat to estimate noise from and get wide tolerances: they are shown, rarely gated.
SINGLE_VALUE_TOLERANCE = {"final_loss": 0.03, "initial_loss": 0.03, "adapter_mb": 0.01,
                          "steps_to_target_loss": 0.25, "trainable_params_m": 0.0,
                          "peak_vram_gb": 0.02, "peak_reserved_gb": 0.05, "nvml_peak_used_gb": 0.05,
                          "peak_rss_gb": 0.10, "load_memory_gb": 0.25, "gpu_util_pct": 0.25,
                          "load_s": 0.5, "first_generate_s": 0.5, "adapter_roundtrip_equal": 0.0,
                          "adapter_changes_output": 0.0, "resume_loss_delta": 0.02}


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
    p90: float
    p99: float

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
    q1, med, q3, p90, p99 = np.percentile(a, [25, 50, 75, 90, 99])
    return Summary(n=len(a), mean=float(a.mean()), median=float(med),
                   stdev=float(a.std(ddof=1)) if len(a) > 1 else 0.0,
                   min=float(a.min()), max=float(a.max()), q1=float(q1), q3=float(q3),
                   p90=float(p90), p99=float(p99))


@dataclass(frozen=True)
class RatioEstimate:
    """new/base ratio of medians with a confidence interval; `method` says how it was made."""

    ratio: float
    low: float
    high: float
    method: str
    n_base: int
    n_new: int


def ratio_of_medians(base: list[float], new: list[float], confidence: float = 0.95,
                     n_boot: int = 4000, seed: int = 0) -> RatioEstimate:
    """Percentile bootstrap of median(new)/median(base), resampling each side independently.

    With a single value on either side there is nothing to resample: the interval collapses to
    the point and the caller applies a tolerance instead.
    """
    b, n = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    if len(b) == 0 or len(n) == 0:
        raise ValueError("both sides need at least one value")
    point = float(np.median(n) / np.median(b))
    if len(b) < 2 or len(n) < 2:
        return RatioEstimate(point, point, point, "single value", len(b), len(n))
    rng = np.random.default_rng(seed)
    mb = np.median(b[rng.integers(0, len(b), (n_boot, len(b)))], axis=1)
    mn = np.median(n[rng.integers(0, len(n), (n_boot, len(n)))], axis=1)
    ratios = mn / mb
    alpha = (1 - confidence) / 2
    low, high = np.quantile(ratios, [alpha, 1 - alpha])
    return RatioEstimate(point, float(low), float(high), f"bootstrap {confidence:.0%} CI of median ratio",
                         len(b), len(n))


SMALL_SAMPLE = 8


def ratio_of_means_log_t(base: list[float], new: list[float], confidence: float = 0.95) -> RatioEstimate:
    """Welch's t interval on log values: the ratio of geometric means with its confidence interval.

    For a handful of samples per side the percentile bootstrap of the median is too narrow (it
    can only reshuffle three values); the t interval, with its few degrees of freedom, says how
    little three samples know.
    """
    from scipy import stats as st

    x, y = np.log(np.asarray(base, dtype=float)), np.log(np.asarray(new, dtype=float))
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    diff = y.mean() - x.mean()
    se = math.sqrt(vx + vy)
    if se == 0:
        return RatioEstimate(math.exp(diff), math.exp(diff), math.exp(diff), "Welch t on logs", len(x), len(y))
    df = (vx + vy) ** 2 / ((vx**2 / (len(x) - 1) if vx else 0) + (vy**2 / (len(y) - 1) if vy else 0))
    t = float(st.t.ppf(0.5 + confidence / 2, df))
    return RatioEstimate(math.exp(diff), math.exp(diff - t * se), math.exp(diff + t * se),
                         f"Welch t {confidence:.0%} CI of geometric-mean ratio", len(x), len(y))


def ratio_interval(base: list[float], new: list[float], confidence: float = 0.95, seed: int = 0) -> RatioEstimate:
    """The interval a comparison uses: Welch t on logs for small samples, bootstrap otherwise."""
    if 2 <= min(len(base), len(new)) < SMALL_SAMPLE:
        return ratio_of_means_log_t(base, new, confidence)
    return ratio_of_medians(base, new, confidence, seed=seed)


def verdict(est: RatioEstimate, better: str, threshold: float) -> str:
    """Regression or improvement only when the whole interval lies beyond the threshold.

    Ratios are new/base; for a lower-is-better metric (time, memory, loss) a ratio above 1 is
    worse, for a higher-is-better one (throughput) a ratio below 1 is.
    """
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher', not {better!r}")
    worse_lo, worse_hi = (est.low, est.high) if better == "lower" else (1 / est.high, 1 / est.low)
    if worse_lo > 1 + threshold:
        return REGRESSION
    if worse_hi < 1 / (1 + threshold):
        return IMPROVEMENT
    if worse_hi <= 1 + threshold and worse_lo >= 1 / (1 + threshold):
        return UNCHANGED
    return INCONCLUSIVE


def threshold_for(metric: str, n_base: int, n_new: int, default: float,
                  overrides: dict[str, float] | None = None) -> float:
    """The per-metric override if any; single-value metrics get their documented tolerance."""
    if overrides and metric in overrides:
        return overrides[metric]
    if min(n_base, n_new) < 2 and metric in SINGLE_VALUE_TOLERANCE:
        return SINGLE_VALUE_TOLERANCE[metric]
    return default


def change_points(values: list[float], min_size: int = 2, min_change: float = 0.05) -> list[int]:
    """Indices where a series steps to a new level (binary segmentation on medians, L1 cost).

    A split is kept when it lowers the summed absolute deviation by more than the series' own
    noise would explain and the two sides' medians differ by at least `min_change` (relative).
    Slow drifts show up as several steps, as in asv's step detection.
    """
    x = np.asarray(values, dtype=float)
    found: list[int] = []

    def cost(seg: np.ndarray) -> float:
        return float(np.abs(seg - np.median(seg)).sum())

    def split(lo: int, hi: int) -> None:
        seg = x[lo:hi]
        if len(seg) < 2 * min_size:
            return
        whole = cost(seg)
        best, best_at = whole, None
        for k in range(min_size, len(seg) - min_size + 1):
            c = cost(seg[:k]) + cost(seg[k:])
            if c < best:
                best, best_at = c, k
        if best_at is None:
            return
        left, right = np.median(seg[:best_at]), np.median(seg[best_at:])
        scale = max(abs(left), abs(right), 1e-12)
        noise = float(np.median(np.abs(np.diff(seg)))) * 2
        if abs(right - left) / scale >= min_change and abs(right - left) > noise:
            found.append(lo + best_at)
            split(lo, lo + best_at)
            split(lo + best_at, hi)

    split(0, len(x))
    return sorted(found)
