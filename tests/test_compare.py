import numpy as np
import pytest

from bench.analysis.compare import compare, describe
from bench.analysis.stats import INCONCLUSIVE, REGRESSION, UNCHANGED, ratio_interval

from conftest import make_record

RNG = np.random.default_rng(7)


def timed(metric, center, n=5, spread=0.01, **params):
    values = list(center * (1 + RNG.normal(0, spread, n)))
    return make_record(metric, float(np.median(values)), samples=values, **params)


def test_slower_decode_is_a_regression_and_names_the_case():
    base = [timed("decode_tok_s", 100.0, batch_size=1, effort="low")]
    new = [timed("decode_tok_s", 75.0, batch_size=1, effort="low")]
    [change] = compare(base, new).changes
    assert change.verdict == REGRESSION and change.estimate.high < 0.95
    assert "decode_tok_s[batch_size=1, effort=low]" in describe(change)


def test_same_distribution_is_unchanged_or_inconclusive_never_a_regression():
    for _ in range(20):
        base = [timed("s_per_step", 1.0, spread=0.02, lora_r=8)]
        new = [timed("s_per_step", 1.0, spread=0.02, lora_r=8)]
        assert compare(base, new).changes[0].verdict in (UNCHANGED, INCONCLUSIVE)


def test_direction_follows_the_metric():
    faster = compare([timed("s_per_step", 1.0, lora_r=8)], [timed("s_per_step", 0.7, lora_r=8)]).changes[0]
    assert faster.verdict == "improvement"


def test_small_samples_get_a_wider_t_interval_than_the_bootstrap():
    base, new = [1.0, 1.02, 0.99], [1.04, 1.06, 1.05]
    t = ratio_interval(base, new)
    assert t.method.startswith("Welch")
    from bench.analysis.stats import ratio_of_medians

    assert t.high - t.low > ratio_of_medians(base, new).high - ratio_of_medians(base, new).low


def test_single_values_use_the_documented_tolerance():
    base = [make_record("final_loss", 1.20, lora_r=8)]
    assert compare(base, [make_record("final_loss", 1.22, lora_r=8)]).changes[0].verdict == UNCHANGED
    assert compare(base, [make_record("final_loss", 1.30, lora_r=8)]).changes[0].verdict == REGRESSION


def test_missing_cases_are_listed_on_each_side():
    base = [timed("decode_tok_s", 100, batch_size=1), timed("decode_tok_s", 100, batch_size=8)]
    new = [timed("decode_tok_s", 100, batch_size=1), timed("ttft_s", 0.1, batch_size=1)]
    result = compare(base, new)
    assert [k[2] for k in result.only_base] == [(("batch_size", "8"),)]
    assert [k[1] for k in result.only_new] == ["ttft_s"]


def test_failed_records_and_configuration_metrics_are_not_compared():
    base = [make_record("new_tokens", 16, batch_size=1), make_record("decode_tok_s", None, status="oom", batch_size=2)]
    assert compare(base, base).changes == []


def test_zero_valued_metrics_compare_on_a_difference():
    base = [make_record("resume_loss_delta", 0.0)]
    assert compare(base, [make_record("resume_loss_delta", 0.0)]).changes[0].verdict == UNCHANGED
    assert compare(base, [make_record("resume_loss_delta", 0.3)]).changes[0].verdict == REGRESSION


@pytest.mark.parametrize("threshold, expected", [(0.05, REGRESSION), (0.5, UNCHANGED)])
def test_threshold_and_per_metric_overrides(threshold, expected):
    base, new = [timed("ttft_s", 0.10, batch_size=1)], [timed("ttft_s", 0.12, batch_size=1)]
    assert compare(base, new, threshold).changes[0].verdict == expected
    assert compare(base, new, 0.05, {"ttft_s": 0.5}).changes[0].verdict == UNCHANGED
