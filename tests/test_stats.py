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


def test_welch_log_contains_one_for_the_same_distribution_and_reports_geometric_means():
    rng = np.random.default_rng(1)
    base, new = list(rng.normal(10, 0.3, 15)), list(rng.normal(10, 0.3, 15))
    est = stats.welch_log(base, new)
    low, high = est.interval(0.025)
    assert low < 1.0 < high and low < est.ratio < high
    assert est.base == pytest.approx(stats.geometric_mean(base)) and est.new == pytest.approx(stats.geometric_mean(new))
    assert est.ratio == pytest.approx(est.new / est.base)  # the columns and the change never disagree


def test_welch_log_excludes_one_for_a_25_percent_slowdown():
    rng = np.random.default_rng(2)
    est = stats.welch_log(list(rng.normal(10, 0.3, 10)), list(rng.normal(12.5, 0.3, 10)))
    assert est.interval(0.025)[0] > 1.15


def test_fewer_samples_give_a_wider_interval():
    base, new = [1.0, 1.02, 0.99, 1.01, 1.0, 0.98], [1.04, 1.06, 1.05, 1.05, 1.03, 1.07]
    three = stats.welch_log(base[:3], new[:3]).interval(0.025)
    six = stats.welch_log(base, new).interval(0.025)
    assert three[1] - three[0] > six[1] - six[0]


def test_a_single_reading_has_no_interval():
    est = stats.single_reading(2.0, 3.0)
    assert est.single and est.interval(0.025) == (1.5, 1.5) and est.method == "single reading"
    assert stats.single_reading(0.0, 0.3).ratio == pytest.approx(1.3)  # a side at zero: 1 + difference
    assert stats.single_verdict(1.04, "lower", 0.03) == stats.REGRESSION
    assert stats.single_verdict(1.04, "lower", None) == stats.INCONCLUSIVE  # no stated tolerance: not judged


def test_own_intervals_are_combined_on_the_log_scale():
    est = stats.from_intervals((1.0, 0.8, 1.25), (0.9, 0.72, 1.125))
    low, high = est.interval(0.025)
    assert est.ratio == pytest.approx(0.9) and low < 0.9 < high and high / low > 1.25 ** 2 * 0.9


def test_paired_rounds_cancel_drift_that_moves_both_versions():
    rng = np.random.default_rng(4)
    drift = [1.0, 1.2, 0.85, 1.1]  # whole rounds slower or faster: both versions alike
    base = [list(d * rng.normal(1.0, 0.01, 5)) for d in drift]
    new = [list(d * 1.1 * rng.normal(1.0, 0.01, 5)) for d in drift]
    est = stats.paired_rounds(base, new)
    low, high = est.interval(0.025)
    assert est.n_base == 4 and 1.05 < low < 1.1 < high < 1.15
    unpaired = stats.welch_log([v for r in base for v in r], [v for r in new for v in r]).interval(0.025)
    assert unpaired[1] - unpaired[0] > 0  # the unpaired interval is what a drifting machine would give
    pooled = stats.pooled_round_variance([[0.1, 0.12, 0.08], [0.0, 0.02]])
    assert pooled[1] == 3


@pytest.mark.parametrize("low, high, better, expected", [
    (1.10, 1.20, "lower", stats.REGRESSION),      # slower for sure
    (0.80, 0.90, "lower", stats.IMPROVEMENT),     # faster for sure
    (0.99, 1.02, "lower", stats.UNCHANGED),       # inside +-5%
    (0.98, 1.12, "lower", stats.INCONCLUSIVE),    # straddles the threshold
    (0.80, 0.90, "higher", stats.REGRESSION),     # throughput down
    (1.10, 1.20, "higher", stats.IMPROVEMENT),
])
def test_verdict_needs_the_whole_interval_beyond_threshold(low, high, better, expected):
    assert stats.verdict(low, high, better, 0.05) == expected


@pytest.mark.parametrize("low, high, point, better, expected", [
    (1.01, 1.20, 1.10, "lower", stats.REGRESSION),     # excludes no change, 10% slower
    (0.99, 1.20, 1.10, "lower", stats.INCONCLUSIVE),   # may be no change at all
    (1.01, 1.07, 1.04, "lower", stats.INCONCLUSIVE),   # a real but small change: below the threshold
    (0.80, 0.99, 0.89, "higher", stats.REGRESSION),    # throughput down 11%
    (0.80, 0.99, 0.89, "lower", stats.IMPROVEMENT),
    (0.99, 1.02, 1.00, "lower", stats.UNCHANGED),
])
def test_paired_verdict_is_significant_and_beyond_the_threshold(low, high, point, better, expected):
    assert stats.verdict(low, high, better, 0.05, point) == expected


def test_verdict_rejects_unknown_direction():
    with pytest.raises(ValueError):
        stats.verdict(1, 1, "sideways", 0.05)


def test_holm_levels_step_down_and_stop():
    tails = stats.holm_tails([0.0001, 0.5, 0.001, 0.9], alpha=0.05)
    assert tails[0] == pytest.approx(0.05 / 4) and tails[2] == pytest.approx(0.05 / 3)
    assert tails[1] == tails[3] == pytest.approx(0.05 / 2)  # the first not rejected sets the rest's level


def test_holm_keeps_a_whole_runs_false_alarms_under_alpha():
    """A/A families of 30 pairs of three samples each, threshold 0 (the hardest case): the share
    of families with any regression stays under 5%; testing each pair at 95% would not."""
    rng = np.random.default_rng(5)
    families, any_holm, any_plain = 300, 0, 0
    for _ in range(families):
        ests = [stats.welch_log(list(np.exp(rng.normal(0, 0.05, 3))), list(np.exp(rng.normal(0, 0.05, 3))))
                for _ in range(30)]
        pvalues = [stats.p_worse(e, "lower", 0.0) for e in ests]
        tails = stats.holm_tails(pvalues)
        any_holm += any(stats.verdict(*e.interval(tl), "lower", 0.0) == stats.REGRESSION for e, tl in zip(ests, tails))
        any_plain += any(stats.verdict(*e.interval(0.025), "lower", 0.0) == stats.REGRESSION for e in ests)
    assert any_holm / families <= 0.06 and any_plain / families > 0.3
