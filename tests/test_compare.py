import numpy as np
import pytest

from bench.analysis.baselines import Quiet
from bench.analysis.compare import Rules, compare, compare_rounds, describe
from bench.report.comparison import interval_text, to_table
from bench.analysis.stats import IMPROVEMENT, INCONCLUSIVE, REGRESSION, UNCHANGED

from conftest import make_record

RNG = np.random.default_rng(7)


def timed(metric, center, n=5, spread=0.01, rng=RNG, **params):
    values = list(center * (1 + rng.normal(0, spread, n)))
    return make_record(metric, float(np.median(values)), samples=values, **params)


def test_slower_decode_is_a_regression_and_names_the_case():
    base = [timed("decode_tok_s", 100.0, batch_size=1, effort="low")]
    new = [timed("decode_tok_s", 75.0, batch_size=1, effort="low")]
    [change] = compare(base, new).changes
    assert change.verdict == REGRESSION and change.high < 0.95 and change.failing
    assert "decode_tok_s[batch_size=1, effort=low]" in describe(change)
    # the change shown is the estimator's: its sign agrees with the base and new columns
    assert (change.new < change.base) and change.change_pct < 0


def test_same_distribution_is_unchanged_or_inconclusive_never_a_regression():
    for _ in range(20):
        base = [timed("s_per_step", 1.0, spread=0.02, lora_r=8)]
        new = [timed("s_per_step", 1.0, spread=0.02, lora_r=8)]
        assert compare(base, new).changes[0].verdict in (UNCHANGED, INCONCLUSIVE)


def test_direction_follows_the_metric():
    faster = compare([timed("s_per_step", 1.0, lora_r=8)], [timed("s_per_step", 0.7, lora_r=8)]).changes[0]
    assert faster.verdict == "improvement"


def test_single_values_use_the_documented_tolerance():
    base = [make_record("final_loss", 1.20, lora_r=8)]
    assert compare(base, [make_record("final_loss", 1.22, lora_r=8)]).changes[0].verdict == UNCHANGED
    assert compare(base, [make_record("final_loss", 1.30, lora_r=8)]).changes[0].verdict == REGRESSION


def test_memory_changes_smaller_than_the_allocators_steps_are_never_a_regression():
    """The tiny model's 4.2 MB load peak read 5.1 MB on a second H100 run of the same code: +20%
    of a single reading, 0.9 MB, below what the allocator can resolve."""
    tiny = compare([make_record("peak_vram_gb", 0.0042, cache="warm")], [make_record("peak_vram_gb", 0.0051, cache="warm")])
    [change] = tiny.changes
    assert change.verdict == UNCHANGED and not tiny.failed and "within 0.05 GB" in change.note
    big = compare([make_record("peak_vram_gb", 14.8, cache="warm")], [make_record("peak_vram_gb", 15.4, cache="warm")])
    assert big.changes[0].verdict == REGRESSION and big.failed


def test_the_tiny_gpu_baselines_thresholds_absorb_the_measured_drift_of_its_training_step():
    """Two runs of one commit on one H100 moved the tiny model's step by +20.3% with steps tight
    inside each run: the shipped GPU baseline's threshold lets that pass and still calls a doubling."""
    from bench.analysis.baselines import load_baseline

    rules = Rules.of(0.05, load_baseline("tiny-gpt-oss-gpu"))
    base = [timed("s_per_step", 0.137, n=29, spread=0.02, lora_r=8, batch_size=2, grad_accum=2)]
    drifted = [timed("s_per_step", 0.165, n=29, spread=0.02, lora_r=8, batch_size=2, grad_accum=2)]
    assert compare(base, drifted).failed and not compare(base, drifted, rules).failed
    doubled = [timed("s_per_step", 0.274, n=29, spread=0.02, lora_r=8, batch_size=2, grad_accum=2)]
    assert compare(base, doubled, rules).changes[0].verdict == REGRESSION


def test_a_check_that_fell_from_pass_to_fail_is_a_regression_not_a_division_by_zero():
    result = compare([make_record("adapter_roundtrip_equal", 1.0)], [make_record("adapter_roundtrip_equal", 0.0)])
    assert result.changes[0].verdict == REGRESSION and result.failed


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
    assert compare(base, new, Rules(threshold)).changes[0].verdict == expected
    assert compare(base, new, Rules(0.05, {"ttft_s": 0.5})).changes[0].verdict == UNCHANGED


def test_a_quiet_host_in_both_runs_is_judged_by_the_baselines_quiet_thresholds():
    rules = Rules(0.05, {"decode_tok_s": 0.2}, quiet=Quiet(0.5, {"decode_tok_s": 0.12}))
    cases = [dict(batch_size=b, effort="low") for b in (1, 2, 3)]
    base = [timed("decode_tok_s", 100.0, spread=0.005, **c) for c in cases]
    new = [timed("decode_tok_s", 85.0, spread=0.005, **c) for c in cases]  # 1.18x worse: beyond 12%, within 20%

    def host(*cores):
        return [make_record("others_cpu_cores", n, suite="infer", **c) for n, c in zip(cores, cases)]

    quiet = compare(base + host(0.1, 0.1, 0.1), new + host(0.2, 0.0, 0.4), rules)
    assert all(c.verdict == REGRESSION and c.threshold == 0.12 and c.quiet_host for c in quiet.gating)
    assert "threshold 12% (quiet host)" in describe(quiet.gating[0])
    assert "quiet host, threshold 12%" in interval_text(quiet.gating[0])  # the markdown and HTML rows
    # one case beside a busy neighbour in one run: that case and the all-cases pair take [thresholds]
    mixed = {c.params.get("batch_size", "all"): c for c in compare(base + host(0.1, 0.1, 0.1), new + host(0.1, 1.0, 0.1),
                                                                   rules).gating}
    assert mixed[1].quiet_host and mixed[1].verdict == REGRESSION
    assert not mixed[2].quiet_host and mixed[2].threshold == 0.2 and mixed[2].verdict != REGRESSION
    assert not mixed["all"].quiet_host and mixed["all"].threshold == 0.2
    # runs that did not record the host's load are never taken for quiet
    assert all(c.threshold == 0.2 and not c.quiet_host for c in compare(base, new, rules).gating)


def test_a_change_measured_beside_a_busy_neighbour_says_so():
    cases = [dict(batch_size=b, effort="low") for b in (1, 2, 3)]
    base = [timed("decode_tok_s", 100.0, spread=0.005, **c) for c in cases]
    new = [timed("decode_tok_s", 70.0, spread=0.005, **c) for c in cases]

    def host(*cores):
        return [make_record("others_cpu_cores", n, suite="infer", **c) for n, c in zip(cores, cases)]

    result = compare(base + host(0.1, 0.1, 0.1), new + host(0.1, 1.5, 0.2))
    notes = {c.params.get("batch_size", "all"): c.note for c in result.gating}
    assert notes[1] == "" and notes[3] == ""  # quiet in both runs
    assert notes[2].startswith("busy host: the rest of it used 1.5 cores during this case in the new run (0.1 in the base)")
    assert "1.5 cores during its busiest infer case" in notes["all"]  # the all-cases pair: its suite's busiest case
    assert "note: infer decode_tok_s [" in to_table(result, "a", "b") and "busy host" in to_table(result, "a", "b")
    # a baseline's [quiet] limit decides what busy means; runs without the reading get no note
    assert all(not c.note for c in compare(base + host(0.1, 1.5, 0.2), new, Rules(quiet=Quiet(2.0, {}))).gating)
    assert all(not c.note for c in compare(base, new).gating)


def test_diagnostics_are_shown_but_never_fail():
    base = [make_record("gpu_util_pct", 40.0, suite="train", lora_r=8), timed("itl_p99_ms", 10.0, batch_size=1)]
    new = [make_record("gpu_util_pct", 17.0, suite="train", lora_r=8), timed("itl_p99_ms", 20.0, batch_size=1)]
    result = compare(base, new)
    assert {c.metric: c.gates for c in result.changes} == {"gpu_util_pct": False, "itl_p99_ms": False}
    assert not result.failed and result.regressions == [] and result.counts()["regression"] == 0
    assert result.counts(gating=False)["regression"] == 1  # itl_p99 doubled: shown as worse
    assert [c.verdict for c in result.changes if c.metric == "gpu_util_pct"] == [INCONCLUSIVE]  # no tolerance: not judged
    opted_in = compare(base, new, Rules(0.05, gates={"itl_p99_ms": True}))
    assert opted_in.failed  # a baseline's [gates] can opt a diagnostic in


def test_only_the_warm_load_gates():
    base = [timed("load_s", 1.0, cache="warm"), make_record("load_s", 8.0, cache="cold")]
    new = [timed("load_s", 1.0, cache="warm"), make_record("load_s", 16.0, cache="cold")]
    result = compare(base, new)
    assert {c.params["cache"]: c.gates for c in result.changes} == {"warm": True, "cold": False}
    assert not result.failed


def test_a_run_of_many_unchanged_pairs_raises_no_false_regression():
    """Thirty gating pairs of three samples, unchanged: every pair tested at 95% would flag some
    of them in most such runs; Holm's step-down keeps the whole run's false alarms near 5%. Its
    own generator: the draws must not depend on which tests of this file ran before (the order is
    shuffled), or the count is a coin flip around its bound."""
    rng = np.random.default_rng(11)
    alarms = 0
    for _ in range(40):
        base = [timed("decode_tok_s", 100.0, n=3, spread=0.05, rng=rng, batch_size=b, effort=e) for b in range(10)
                for e in ("low", "medium", "high")]
        new = [timed("decode_tok_s", 100.0, n=3, spread=0.05, rng=rng, batch_size=b, effort=e) for b in range(10)
               for e in ("low", "medium", "high")]
        alarms += compare(base, new, Rules(0.0)).failed
    assert alarms <= 4


def test_a_change_common_to_every_case_is_judged_in_its_own_family():
    """Nine decode cases over three paired rounds, each round drifting every case alike and each
    case moving on its own by 4%: 15% slower on every case. Per case, Holm over nine pairs at 2
    degrees of freedom cannot call it; the all-cases pair, in a family of its own, does, and an
    unchanged chain of the same noise raises no alarm."""
    rng = np.random.default_rng(11)
    cases = [(b, e) for b in (1, 2, 3) for e in ("low", "medium", "high")]

    def run(factor, drift):
        return [make_record("decode_tok_s", 100.0, samples=list(100 / (drift * factor * rng.normal(1, 0.04))
                                                               * rng.normal(1, 0.01, 8)), batch_size=b, effort=e)
                for b, e in cases]

    drift = [1.0, 1.12, 0.93]
    slowed = compare_rounds([run(1.0, d) for d in drift], [run(1.15, d) for d in drift])
    [together] = [c for c in slowed.changes if "cases" in c.params]
    assert slowed.failed and together.verdict == REGRESSION
    assert slowed.all_cases_pairs == 1 and slowed.interval_pairs == 10
    alarms = sum(compare_rounds([run(1.0, d) for d in drift], [run(1.0, d) for d in drift]).failed for _ in range(20))
    assert alarms <= 2


def test_retained_throughput_uses_its_own_interval():
    def retained(value, low, high):
        return make_record("train_retained", value, extra={"low": low, "high": high}, placement="shared")

    [change] = compare([retained(1.08, 0.9, 1.3)], [retained(0.98, 0.8, 1.2)]).changes
    assert not change.estimate.single and change.low < 0.98 / 1.08 < change.high and change.verdict == INCONCLUSIVE


def test_rounds_pair_drift_away():
    rng = np.random.default_rng(3)
    drift = [1.0, 1.15, 0.9]

    def run(factor, d):
        return [make_record("s_per_step", 1.0, samples=list(d * factor * rng.normal(1, 0.01, 20)), lora_r=8)]

    same = compare_rounds([run(1.0, d) for d in drift], [run(1.0, d) for d in drift])
    assert same.changes[0].verdict == UNCHANGED and not same.failed
    slower = compare_rounds([run(1.0, d) for d in drift], [run(1.1, d) for d in drift])
    assert slower.failed and "paired" in slower.method
    faster = compare_rounds([run(1.0, d) for d in drift], [run(0.8, d) for d in drift])
    assert faster.changes[0].verdict == IMPROVEMENT


def test_paired_rounds_call_a_significant_common_change_beyond_the_threshold_without_false_alarms():
    """Three rounds, 3% noise between a round's pair: a 10% slowdown's interval often straddles the
    5% margin, where the margin rule alone (whole interval beyond it) caught 19 of these 40; the
    all-cases pair judged by significance catches 31, and unchanged pairs of the same noise stay clean."""
    rng = np.random.default_rng(11)

    def run(factor, d):
        return [make_record("decode_tok_s", 10.0, samples=list(10.0 / (d * factor) * rng.normal(1, 0.01, 5)),
                            batch_size=b, effort="low") for b in (1, 2, 3)]

    caught = alarms = 0
    for _ in range(40):
        drift = rng.normal(1, 0.04, 3)
        base = [run(1.0, d) for d in drift]
        caught += compare_rounds(base, [run(1.1, d * rng.normal(1, 0.03)) for d in drift]).failed
        alarms += compare_rounds(base, [run(1.0, d * rng.normal(1, 0.03)) for d in drift]).failed
    assert caught >= 28 and alarms == 0


def test_a_metric_of_one_case_is_judged_as_a_whole_in_paired_rounds_and_its_reciprocal_with_it():
    """The quick profile has one training case. Three paired rounds with 2% noise between a round's
    runs: its 10% slower step is a regression through its all-cases pair (asv's rule), where its
    per-case pair needs the whole interval beyond 5%; tokens/s, the step time's reciprocal, is judged
    at the step's level instead of counting as a second test; unchanged rounds of the same noise stay clean."""
    rng = np.random.default_rng(5)

    def run(factor, d):
        step = d * factor * rng.normal(1, 0.01, 4)
        return [make_record("s_per_step", 1.0, samples=list(step), lora_r=8),
                make_record("train_tokens_per_s", 1000.0, samples=list(1000 / step), lora_r=8)]

    caught = alarms = 0
    for _ in range(20):
        drift = rng.normal(1, 0.05, 3)
        base = [run(1.0, d) for d in drift]
        slowed = compare_rounds(base, [run(1.1, d * rng.normal(1, 0.02)) for d in drift])
        whole = {c.metric: c for c in slowed.changes if "cases" in c.params}
        assert whole["s_per_step"].params == {"cases": "all 1"}
        assert whole["train_tokens_per_s"].confidence == whole["s_per_step"].confidence
        caught += whole["s_per_step"].verdict == REGRESSION
        alarms += compare_rounds(base, [run(1.0, d * rng.normal(1, 0.02)) for d in drift]).failed
    assert caught >= 16 and alarms == 0
