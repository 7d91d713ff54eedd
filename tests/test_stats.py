import numpy as np
import pytest

from bench.analysis import stats


def test_summarize_keeps_order_statistics():
    s = stats.summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s.n == 5 and s.median == 3.0 and s.min == 1.0 and s.max == 100.0
    assert s.q1 == 2.0 and s.q3 == 4.0 and s.iqr == 2.0
    assert s.cv == pytest.approx(s.stdev / s.mean)


def test_summarize_single_value_has_no_spread():
    s = stats.summarize([2.5])
    assert s.stdev == 0.0 and s.median == 2.5


def test_summarize_refuses_empty():
    with pytest.raises(ValueError):
        stats.summarize([])


def test_ratio_interval_contains_one_for_same_distribution():
    rng = np.random.default_rng(1)
    base, new = rng.normal(10, 0.3, 15), rng.normal(10, 0.3, 15)
    est = stats.ratio_of_medians(list(base), list(new))
    assert est.low < 1.0 < est.high
    assert est.low < est.ratio < est.high


def test_ratio_interval_excludes_one_for_a_25_percent_slowdown():
    rng = np.random.default_rng(2)
    base, new = rng.normal(10, 0.3, 10), rng.normal(12.5, 0.3, 10)
    est = stats.ratio_of_medians(list(base), list(new))
    assert est.low > 1.15 and est.ratio == pytest.approx(np.median(new) / np.median(base))


def test_ratio_single_values_collapse_to_point():
    est = stats.ratio_of_medians([2.0], [3.0])
    assert est.low == est.high == est.ratio == 1.5 and est.method == "single value"


@pytest.mark.parametrize("low, high, better, expected", [
    (1.10, 1.20, "lower", stats.REGRESSION),      # slower for sure
    (0.80, 0.90, "lower", stats.IMPROVEMENT),     # faster for sure
    (0.99, 1.02, "lower", stats.UNCHANGED),       # inside +-5%
    (0.98, 1.12, "lower", stats.INCONCLUSIVE),    # straddles the threshold
    (0.80, 0.90, "higher", stats.REGRESSION),     # throughput down
    (1.10, 1.20, "higher", stats.IMPROVEMENT),
])
def test_verdict_needs_the_whole_interval_beyond_threshold(low, high, better, expected):
    est = stats.RatioEstimate((low + high) / 2, low, high, "test", 5, 5)
    assert stats.verdict(est, better, 0.05) == expected


def test_verdict_rejects_unknown_direction():
    with pytest.raises(ValueError):
        stats.verdict(stats.RatioEstimate(1, 1, 1, "", 1, 1), "sideways", 0.05)


def test_threshold_for_single_value_metrics_and_overrides():
    assert stats.threshold_for("final_loss", 1, 1, 0.05) == stats.SINGLE_VALUE_TOLERANCE["final_loss"]
    assert stats.threshold_for("final_loss", 5, 5, 0.05) == 0.05
    assert stats.threshold_for("s_per_step", 5, 5, 0.05, {"s_per_step": 0.1}) == 0.1


def test_change_points_find_a_step_and_ignore_noise():
    rng = np.random.default_rng(3)
    flat = list(rng.normal(10, 0.05, 20))
    assert stats.change_points(flat) == []
    stepped = flat[:10] + [v * 1.3 for v in flat[10:]]
    assert stats.change_points(stepped) == [10]
