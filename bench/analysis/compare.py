"""Comparing two runs: per metric and parameter set, the ratio of medians with a bootstrap
confidence interval, and a verdict that calls a regression only when the whole interval lies
beyond the threshold. Pure: records in, a `Comparison` out; rendering lives in bench.report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.records.results import Measurement
from bench.analysis.stats import IMPROVEMENT, REGRESSION, RatioEstimate, ratio_interval, threshold_for, verdict

# Metrics that describe the configuration rather than its performance: equal by construction.
NOT_COMPARED = frozenset({"new_tokens", "case"})


@dataclass(frozen=True)
class MetricChange:
    suite: str
    metric: str
    params: dict
    unit: str
    better: str
    base: float
    new: float
    estimate: RatioEstimate
    threshold: float
    verdict: str

    @property
    def change_pct(self) -> float:
        return (self.estimate.ratio - 1) * 100


@dataclass
class Comparison:
    changes: list[MetricChange] = field(default_factory=list)
    only_base: list[tuple] = field(default_factory=list)  # case keys measured in BASE only
    only_new: list[tuple] = field(default_factory=list)

    @property
    def regressions(self) -> list[MetricChange]:
        return [c for c in self.changes if c.verdict == REGRESSION]

    @property
    def improvements(self) -> list[MetricChange]:
        return [c for c in self.changes if c.verdict == IMPROVEMENT]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.changes:
            out[c.verdict] = out.get(c.verdict, 0) + 1
        return out


def _values(r: Measurement) -> list[float]:
    return list(r.samples) if len(r.samples) >= 2 else [float(r.value)]


def _comparable(records: list[Measurement], by_variant: bool = False) -> dict[tuple, Measurement]:
    return {(r.case_key() + (r.variant,) if by_variant else r.case_key()): r for r in records
            if r.status == "ok" and r.value is not None and r.metric not in NOT_COMPARED}


def comparable_keys(records: list[Measurement], by_variant: bool = False) -> set[tuple]:
    """Case keys of the measurements a comparison would use."""
    return set(_comparable(records, by_variant))


def mixes_variants(*runs: list[Measurement]) -> bool:
    """Whether a run measured its cases with several engines or GPU models: then like is compared
    with like (hf with hf, H100 with H100); two single-variant runs are compared case by case
    whatever ran them, which is how one engine or GPU is compared with another."""
    return any(len({r.variant for r in run}) > 1 for run in runs)


def compare(base: list[Measurement], new: list[Measurement], threshold: float = 0.05,
            overrides: dict[str, float] | None = None, seed: int = 0, by_variant: bool | None = None) -> Comparison:
    if by_variant is None:
        by_variant = mixes_variants(base, new)
    b, n = _comparable(base, by_variant), _comparable(new, by_variant)
    result = Comparison(only_base=sorted(set(b) - set(n), key=str), only_new=sorted(set(n) - set(b), key=str))
    for key in sorted(set(b) & set(n), key=str):
        rb, rn = b[key], n[key]
        vb, vn = _values(rb), _values(rn)
        if min(vb) <= 0 or min(vn) <= 0:  # a ratio needs positive values (e.g. a zero resume delta)
            est = _difference_as_ratio(rb.value, rn.value)
        else:
            est = ratio_interval(vb, vn, seed=seed)
        t = threshold_for(rn.metric, len(vb), len(vn), threshold, overrides)
        result.changes.append(MetricChange(rn.suite, rn.metric, rn.params, rn.unit, rn.better, rb.value, rn.value,
                                           est, t, verdict(est, rn.better, t)))
    return result


def _difference_as_ratio(base: float, new: float) -> RatioEstimate:
    """Where a side is zero (a loss delta, a boolean), compare on a 1 + difference scale."""
    ratio = 1 + (new - base)
    return RatioEstimate(ratio, ratio, ratio, "1 + difference (a side is zero)", 1, 1)


def describe(change: MetricChange) -> str:
    params = ", ".join(f"{k}={v}" for k, v in sorted(change.params.items()))
    return (f"{change.suite} {change.metric}[{params}]: {change.base:.4g} -> {change.new:.4g} {change.unit} "
            f"({change.change_pct:+.1f}%, {change.estimate.method} {change.estimate.low:.3f}-{change.estimate.high:.3f}, "
            f"threshold {change.threshold:.0%})").replace("  ", " ")


def run_thresholds(run: Path) -> dict[str, float] | None:
    """The per-metric thresholds of the baseline a run was checked against, if it can be found."""
    from bench.analysis.baselines import load_baseline
    from bench.errors import BenchError
    from bench.records.results import RunManifest

    run = Path(run)
    try:
        name = RunManifest.read(run if run.is_dir() else run.parent).baseline
        if not name:
            return None
        return load_baseline(name if Path(name).is_file() else Path(name).stem).thresholds
    except BenchError:
        return None
