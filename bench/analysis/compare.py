"""The one comparison engine: two runs (or two sets of runs measured in rounds, `bench ab`) in,
one verdict per (case, metric) out. Every view (the CLI's table, markdown and JSON, the HTML
comparison page, `--compare` during a session, the engine/GPU sections, the history page and the
JUnit properties) renders a `Comparison` made here, so they cannot disagree.

How a verdict is reached, per (case, metric) measured on both sides:
1. one estimate of new/base (`stats`): geometric means with Welch's t, paired rounds, a metric's
   own interval, or a single reading;
2. the gating pairs (the registry's gating metrics, or what a baseline's [gates] opts in) form
   two families, the per-case pairs and the all-cases pairs of each metric (of three or more cases
   between two runs; of any number in paired rounds), at 2.5% each; Holm's step-down within a
   family over the one-sided p-values of "worse by more than the threshold" (all-cases pairs of
   paired rounds: "worse") sets the level each is judged at, so that the chance of any false
   regression in a whole run is at most 5%, however many pairs it has; a metric that is an exact
   function of another of its case (tokens/s of s/step) takes that pair's level, as one test;
3. a regression (or improvement) when the interval at that level lies wholly beyond the threshold;
   for the all-cases pairs of paired rounds, whose interval holds the drift between runs, when the
   interval excludes no change and the estimate lies beyond the threshold, Holm then testing
   "worse at all" (`judge` says why). Unchanged when the interval lies within the threshold;
   inconclusive otherwise. Diagnostics get plain 95% intervals and never fail a run. Single
   readings are judged by their stated tolerance.

The threshold of a pair of two separate runs: the baseline's `[quiet]` one where neither run's
case saw the rest of the host busy (`quiet_cases`), else its `[thresholds]` one, else the default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.analysis import stats
from bench.analysis.baselines import Quiet
from bench.analysis.stats import ALPHA, IMPROVEMENT, REGRESSION, UNCHANGED, Estimate
from bench.records.metrics import METRICS, gates
from bench.records.results import Measurement, params_key

DIAGNOSTIC_TAIL = 0.025  # diagnostics: plain two-sided 95% intervals


@dataclass(frozen=True)
class MetricChange:
    suite: str
    metric: str
    params: dict
    unit: str
    better: str
    estimate: Estimate
    threshold: float  # the threshold, or for a single reading its tolerance (None: not judged)
    gates: bool
    tail: float  # probability left in each tail of the interval shown (0.025: a 95% interval)
    low: float
    high: float
    verdict: str
    note: str = ""  # e.g. what a confirming re-measurement found
    quiet_host: bool = False  # judged by the baseline's [quiet] threshold: both runs' host was quiet

    @property
    def base(self) -> float:
        return self.estimate.base

    @property
    def new(self) -> float:
        return self.estimate.new

    @property
    def change_pct(self) -> float:
        return (self.estimate.ratio - 1) * 100

    @property
    def confidence(self) -> float | None:
        """The two-sided confidence of the interval shown; None for a single reading."""
        return None if self.estimate.single else 1 - 2 * self.tail

    @property
    def failing(self) -> bool:
        return self.gates and self.verdict == REGRESSION


@dataclass
class Comparison:
    changes: list[MetricChange] = field(default_factory=list)
    only_base: list[tuple] = field(default_factory=list)  # case keys measured in BASE only
    only_new: list[tuple] = field(default_factory=list)
    alpha: float = ALPHA  # the false-alarm rate of this comparison (of one look, in a sequential one)
    method: str = "two runs"
    paired: bool = False  # paired rounds: all-cases pairs judged significant and beyond the threshold
    looks: int = 1  # a sequential `bench ab`: the looks planned, each at alpha, `looks * alpha` in all

    @property
    def gating(self) -> list[MetricChange]:
        return [c for c in self.changes if c.gates]

    @property
    def diagnostics(self) -> list[MetricChange]:
        return [c for c in self.changes if not c.gates]

    @property
    def regressions(self) -> list[MetricChange]:
        """The regressions that fail the comparison: gating ones."""
        return [c for c in self.changes if c.failing]

    @property
    def improvements(self) -> list[MetricChange]:
        return [c for c in self.gating if c.verdict == IMPROVEMENT]

    @property
    def failed(self) -> bool:
        return bool(self.regressions)

    def counts(self, gating: bool = True) -> dict[str, int]:
        """Verdicts of the gating pairs (or of the diagnostics), every verdict named even at 0."""
        out = {v: 0 for v in (stats.REGRESSION, stats.IMPROVEMENT, stats.INCONCLUSIVE, stats.UNCHANGED)}
        for c in (self.gating if gating else self.diagnostics):
            out[c.verdict] += 1
        return out

    @property
    def interval_pairs(self) -> int:
        """Gating pairs judged by an interval: the families Holm controls."""
        return sum(1 for c in self.gating if not c.estimate.single)

    @property
    def all_cases_pairs(self) -> int:
        """Of those, the pairs of all cases of a metric together: a family of their own."""
        return sum(1 for c in self.gating if not c.estimate.single and ALL_CASES in c.params)


@dataclass(frozen=True)
class Rules:
    """What a comparison applies beyond the registry: the default threshold, per-metric
    thresholds and gating choices of a baseline, and the run-level false-alarm rate."""

    threshold: float = stats.DEFAULT_THRESHOLD
    thresholds: dict = field(default_factory=dict)
    gates: dict = field(default_factory=dict)  # metric -> bool, a baseline's [gates]
    alpha: float = ALPHA
    quiet: Quiet | None = None  # a baseline's [quiet]: thresholds for two runs on a quiet host

    @classmethod
    def of(cls, threshold: float, baseline=None, alpha: float = ALPHA) -> "Rules":
        if baseline is None:
            return cls(threshold, alpha=alpha)
        return cls(threshold, dict(baseline.thresholds), dict(baseline.gates), alpha, baseline.quiet)

    def gating(self, metric: str, params: dict) -> bool:
        return self.gates[metric] if metric in self.gates else gates(metric, params)

    def quiet_applies(self, metric: str, single: bool) -> bool:
        """Whether a pair of this metric measured on a quiet host takes a [quiet] threshold."""
        return self.quiet is not None and not single and metric in self.quiet.thresholds

    def threshold_for(self, metric: str, single: bool, quiet_host: bool = False) -> float | None:
        """`quiet_host`: the pair ran on a quiet host in both runs and `quiet_applies`."""
        if quiet_host:
            return self.quiet.thresholds[metric]
        if metric in self.thresholds:
            return self.thresholds[metric]
        return METRICS[metric].tolerance if single else self.threshold


def _values(r: Measurement) -> list[float]:
    return list(r.samples) if len(r.samples) >= 2 else [float(r.value)]


def comparable(records: list[Measurement], by_lane: bool = False) -> dict[tuple, Measurement]:
    """The measurements a comparison uses, by case key (and lane, when like is matched with like)."""
    return {(r.case_key() + (r.lane,) if by_lane else r.case_key()): r for r in records
            if r.status == "ok" and r.value is not None and r.metric in METRICS and METRICS[r.metric].compared}


def mixes_lanes(*runs: list[Measurement]) -> bool:
    """Whether a run measured its cases with several engines or GPU models: then like is compared
    with like (hf with hf, H100 with H100); two single-lane runs are compared case by case
    whatever ran them, which is how one engine or GPU is compared with another."""
    return any(len({r.lane for r in run}) > 1 for run in runs)


def estimate(rb: Measurement, rn: Measurement) -> Estimate:
    """The one estimator for two runs' measurements of one (case, metric)."""
    if METRICS[rn.metric].own_interval and {"low", "high"} <= set(rb.extra) & set(rn.extra):
        return stats.from_intervals((rb.value, rb.extra["low"], rb.extra["high"]),
                                    (rn.value, rn.extra["low"], rn.extra["high"]))
    vb, vn = _values(rb), _values(rn)
    if min(len(vb), len(vn)) >= 2 and min(vb) > 0 and min(vn) > 0:
        return stats.welch_log(vb, vn)
    return stats.single_reading(float(rb.value), float(rn.value))


ALL_CASES = "cases"  # the parameter naming an across-cases pair: {"cases": "all 9"}


def across_cases(pairs: list[tuple[Measurement, Estimate]], rules: Rules,
                 rounds: dict[int, list[float]] | None = None) -> list[tuple[Measurement, Estimate]]:
    """The pairs with, per gating metric, one more pair for all its cases together. Two separate
    runs (`rounds` None): for metrics of three or more cases, whose spread is then the between-run
    noise each case's interval also carries (`stats.between_case_variance`). Paired rounds
    (`rounds`: each pair's per-round log differences, by index): for every gating metric, even of
    one case (a quick profile's one training case), since the rounds, not the cases, are the noise."""
    by_metric: dict[tuple, list[int]] = {}
    for i, (r, est) in enumerate(pairs):
        if not est.single and rules.gating(r.metric, r.params):
            by_metric.setdefault((r.suite, r.metric, r.backend, r.gpu_name), []).append(i)
    out = list(pairs)
    for members in by_metric.values():
        ests = [pairs[i][1] for i in members]
        if len(ests) < (1 if rounds is not None else 3):
            continue
        first = pairs[members[0]][0]
        aggregate = dataclasses.replace(first, params={ALL_CASES: f"all {len(members)}"},
                                        test_id=f"{first.suite}::{first.metric}[all cases]")
        if rounds is not None:
            out.append((aggregate, stats.across_cases_rounds(ests, [rounds[i] for i in members])))
            continue
        noise = stats.between_case_variance(ests)
        if noise is not None:
            for i in members:
                out[i] = (pairs[i][0], stats.with_between_run_noise(pairs[i][1], *noise, len(members)))
        out.append((aggregate, stats.across_cases(ests)))
    return out


def families(pairs: list[tuple[Measurement, Estimate]], gating: list[bool]) -> list[list[int]]:
    """The gating pairs with an interval, as the families Holm runs within: the all-cases pairs and
    the per-case pairs, alpha/2 each (Bonferroni between them, so a whole run still raises a false
    regression at most alpha of the time). In one family, the few all-cases pairs, which see a
    change common to every case of a metric, were judged at the level of thirty cases (a 99.8%
    interval at three rounds); apart, they are judged at the level of the few of them."""
    family = [i for i, (_, est) in enumerate(pairs) if gating[i] and not est.single]
    aggregates = [i for i in family if ALL_CASES in pairs[i][0].params]
    per_case = [i for i in family if ALL_CASES not in pairs[i][0].params]
    return [f for f in (aggregates, per_case) if f]


def same_tests(pairs: list[tuple[Measurement, Estimate]]) -> dict[int, int]:
    """Pairs whose metric is an exact function of another metric of the same case (the registry's
    `same_test_as`), by index, to the index of that pair: they are judged at its level, not counted
    again in its Holm family, where a duplicate would only tighten every other pair's level."""
    index = {r.case_key() + (r.backend, r.gpu_name): i for i, (r, _) in enumerate(pairs)}
    out = {}
    for i, (r, _) in enumerate(pairs):
        source = METRICS[r.metric].same_test_as if r.metric in METRICS else None
        suite, _, params = r.case_key()
        j = index.get((suite, source, params, r.backend, r.gpu_name)) if source else None
        if j is not None:
            out[i] = j
    return out


HOST_LOAD = "others_cpu_cores"  # what the rest of the host used during a case (bench.telemetry.host_load)
BUSY_CORES = 0.5  # the rest of the host using more than this many cores makes a case's host busy


def host_load_by_case(run: list[Measurement]) -> dict[tuple, float]:
    """Per case (suite, params), the cores the rest of the host used while it ran."""
    return {r.case_key()[::2]: float(r.value) for r in run if r.metric == HOST_LOAD and r.value is not None}


def quiet_cases(base: list[Measurement], new: list[Measurement], limit: float) -> set[tuple]:
    """The cases (suite, params) during which the rest of the host used at most `limit` cores, in
    both runs. A case without that reading in either run is not quiet."""
    def quiet(run: list[Measurement]) -> set[tuple]:
        return {case for case, cores in host_load_by_case(run).items() if cores <= limit}

    return quiet(base) & quiet(new)


def busy_host_note(change: MetricChange, base: dict[tuple, float], new: dict[tuple, float], limit: float) -> str:
    """What a changed pair should be read with when the rest of the host was busy in either run:
    on the 2-core CPU machine, unchanged pairs beside a busy neighbour moved by up to 22% (10-11%
    on a quiet host), so a verdict there may be the neighbour's, not the code's."""
    if ALL_CASES in change.params:
        def worst(run: dict[tuple, float]) -> float | None:
            loads = [v for (suite, _), v in run.items() if suite == change.suite]
            return max(loads) if loads else None
        b, n, where = worst(base), worst(new), f"during its busiest {change.suite} case"
    else:
        key = (change.suite, params_key(change.params))
        b, n, where = base.get(key), new.get(key), "during this case"
    if max((v for v in (b, n) if v is not None), default=0.0) <= limit:
        return ""
    n_text, b_text = ("not recorded" if v is None else f"{v:.1f}" for v in (n, b))
    return (f"busy host: the rest of it used {n_text} cores {where} in the new run ({b_text} in the base); "
            "rerun on a quiet host, or use bench ab, before reading this as a change")


def on_quiet_host(pairs: list[tuple[Measurement, Estimate]], quiet: set[tuple]) -> list[bool]:
    """Per pair, whether both runs measured it on a quiet host; an all-cases pair, when every case
    of its suite in the comparison was."""
    cases = {r.case_key()[::2] for r, _ in pairs if ALL_CASES not in r.params}
    suite_quiet = {suite: all(case in quiet for case in cases if case[0] == suite) for suite, _ in cases}
    return [suite_quiet.get(r.suite, False) if ALL_CASES in r.params else r.case_key()[::2] in quiet
            for r, _ in pairs]


def judge(pairs: list[tuple[Measurement, Estimate]], rules: Rules, paired: bool = False,
          quiet_host: list[bool] | None = None) -> list[MetricChange]:
    """Verdicts for estimated pairs (`Measurement` gives the case, suite, metric and unit):
    Holm within each family of gating pairs that have an interval, tolerances for single readings.

    A regression needs the whole interval beyond the threshold (Holm testing "worse by more than
    the threshold"): the margin absorbs what an interval cannot see, the drift between two
    separate runs, or one case's outlier round among few. One exception: the all-cases pair of
    paired rounds (`paired`, `bench ab`), whose interval holds the drift and averages a metric's
    cases, is a regression when significant (Holm testing "worse at all") and estimated beyond the
    threshold, asv's rule. Judged by the margin, a 10% slowdown at a 5% threshold needed an interval
    of +-5% and was mostly missed; on the per-case pairs the same rule raised false alarms from
    single outlier rounds (3 of 43 unchanged windows of 3 rounds on the 2-core CPU, 0 with the margin).
    """
    gating = [rules.gating(r.metric, r.params) for r, _ in pairs]
    quiet_host = [bool(q) and rules.quiet_applies(r.metric, est.single)
                  for (r, est), q in zip(pairs, quiet_host or [False] * len(pairs))]
    thresholds = [rules.threshold_for(r.metric, est.single, q) for (r, est), q in zip(pairs, quiet_host)]
    significant = [paired and ALL_CASES in r.params for r, _ in pairs]  # judged by significance, not margin
    same = {i: j for i, j in same_tests(pairs).items() if gating[i] and gating[j]}
    tails: dict[int, float] = {}
    groups = families(pairs, [g and i not in same for i, g in enumerate(gating)])
    for members in groups:
        tails.update(zip(members, stats.holm_tails(
            [stats.p_worse(pairs[i][1], pairs[i][0].better, 0.0 if significant[i] else thresholds[i]) for i in members],
            rules.alpha / len(groups))))
    tails.update({i: tails[j] for i, j in same.items() if j in tails})
    changes = []
    for i, (r, est) in enumerate(pairs):
        tail = tails.get(i, DIAGNOSTIC_TAIL)
        low, high = est.interval(tail)
        if est.single:
            verdict = stats.single_verdict(est.ratio, r.better, thresholds[i])
        else:
            verdict = stats.verdict(low, high, r.better, thresholds[i], est.ratio if significant[i] else None)
        note = ""
        floor = METRICS[r.metric].floor if r.metric in METRICS else None
        if verdict in (REGRESSION, IMPROVEMENT) and floor is not None and abs(est.new - est.base) < floor:
            verdict, note = UNCHANGED, f"within {floor:g} {r.unit}, the least change this metric can show"
        changes.append(MetricChange(r.suite, r.metric, r.params, r.unit, r.better, est, thresholds[i], gating[i],
                                    tail, low, high, verdict, note=note, quiet_host=quiet_host[i]))
    return changes


def compare(base: list[Measurement], new: list[Measurement], rules: Rules | None = None,
            by_lane: bool | None = None) -> Comparison:
    """Two runs, case by case."""
    rules = rules or Rules()
    if by_lane is None:
        by_lane = mixes_lanes(base, new)
    b, n = comparable(base, by_lane), comparable(new, by_lane)
    keys = sorted(set(b) & set(n), key=str)
    pairs = across_cases([(n[k], estimate(b[k], n[k])) for k in keys], rules)
    quiet = on_quiet_host(pairs, quiet_cases(base, new, rules.quiet.others_cpu_cores)) if rules.quiet else None
    changes = judge(pairs, rules, quiet_host=quiet)
    limit = rules.quiet.others_cpu_cores if rules.quiet else BUSY_CORES
    base_load, new_load = host_load_by_case(base), host_load_by_case(new)
    changes = [dataclasses.replace(c, note="; ".join(filter(None, (c.note, busy_host_note(c, base_load, new_load, limit)))))
               if c.verdict in (REGRESSION, IMPROVEMENT) else c for c in changes]
    return Comparison(changes, only_base=sorted(set(b) - set(n), key=str), only_new=sorted(set(n) - set(b), key=str),
                      alpha=rules.alpha, method="two runs")


def compare_rounds(base_runs: list[list[Measurement]], new_runs: list[list[Measurement]],
                   rules: Rules | None = None, looks: int = 1) -> Comparison:
    """Runs of two versions measured in alternating rounds (`bench ab`): round i of each side is
    paired; a metric's paired variance is pooled over its cases. Cases measured in every run of
    both sides are compared; the rest are listed as missing. `looks`: this is one of that many
    looks of a sequential comparison, judged at the rules' alpha divided among them."""
    rules = rules or Rules()
    rules = dataclasses.replace(rules, alpha=rules.alpha / looks)
    if len(base_runs) != len(new_runs) or not base_runs:
        raise ValueError("rounds need the same number of runs on each side, at least one")
    by_run_b = [comparable(run) for run in base_runs]
    by_run_n = [comparable(run) for run in new_runs]
    keys_b = set.intersection(*(set(r) for r in by_run_b))
    keys_n = set.intersection(*(set(r) for r in by_run_n))
    keys = sorted(keys_b & keys_n, key=str)
    series = {k: ([_values(run[k]) for run in by_run_b], [_values(run[k]) for run in by_run_n]) for k in keys}
    # a side at zero (a loss delta, a failed equality) has no logarithm: compared as a single reading
    logged = {k: stats.round_differences(*series[k]) for k in keys
              if min(min(v) for v in series[k][0] + series[k][1]) > 0}
    pooled = {metric: stats.pooled_round_variance([d for k, d in logged.items() if k[1] == metric])
              for metric in {k[1] for k in logged}}
    pairs, differences = [], {}
    for k in keys:
        base_runs, new_runs = series[k]
        if k in logged:
            est = stats.paired_rounds(base_runs, new_runs, *(pooled[k[1]] or (None, None)))
            differences[len(pairs)] = logged[k]
        else:
            est = stats.single_reading(sum(v[0] for v in base_runs) / len(base_runs),
                                       sum(v[0] for v in new_runs) / len(new_runs))
        pairs.append((by_run_n[-1][k], est))
    # paired rounds hold the between-run noise already: only the across-cases pairs are added
    return Comparison(judge(across_cases(pairs, rules, differences), rules, paired=True),
                      only_base=sorted(keys_b - keys_n, key=str),
                      only_new=sorted(keys_n - keys_b, key=str), alpha=rules.alpha,
                      method=f"{len(base_runs)} alternating rounds a side, paired", paired=True, looks=looks)


# ---- a sequential `bench ab`: more rounds only where the rounds so far point at a regression ----------
def look_points(rounds: int, max_rounds: int) -> list[int]:
    """The round counts at which a sequential comparison is judged: every `rounds`, and `max_rounds`."""
    return sorted({*range(rounds, max_rounds, rounds), max(rounds, max_rounds)})


def worth_more_rounds(cmp: Comparison) -> list[MetricChange]:
    """The all-cases pairs that point at a regression the rounds so far cannot call: inconclusive,
    estimated worse than their threshold. A per-case pair is not enough: among tens of them one
    usually strays that far in a few noisy rounds (on the 2-core CPU, an unchanged comparison of 5
    rounds nearly always had one), while a metric's cases together move less than each."""
    out = []
    for c in cmp.gating:
        if ALL_CASES not in c.params or c.verdict != stats.INCONCLUSIVE or c.threshold is None:
            continue
        if stats.times_worse(c.estimate.ratio, c.better) > 1 + c.threshold:
            out.append(c)
    return out


def look(base_runs: list[list[Measurement]], new_runs: list[list[Measurement]], rules: Rules,
         planned: int) -> tuple[Comparison, bool]:
    """One look of a sequential comparison of paired rounds: its verdicts, each at alpha/planned (so
    that all the looks together raise a false regression at most alpha of the time, whenever they
    stop), and whether to stop here: on a regression, or when nothing points at one."""
    cmp = compare_rounds(base_runs, new_runs, rules, looks=planned)
    return cmp, cmp.failed or not worth_more_rounds(cmp)


def replay_sequential(base_runs: list[list[Measurement]], new_runs: list[list[Measurement]], rules: Rules,
                      rounds: int, max_rounds: int) -> tuple[Comparison, int]:
    """What a sequential `bench ab` would have concluded had these been its rounds (`bench
    errorrate`), and after how many rounds."""
    points = look_points(rounds, max_rounds)
    for n in points:
        cmp, stop = look(base_runs[:n], new_runs[:n], rules, len(points))
        if stop:
            break
    return cmp, n


def describe(change: MetricChange, params: Callable[[dict], str] | None = None) -> str:
    """One line for a terminal or a JUnit property; the same figures as every other view."""
    shown = params(change.params) if params else ", ".join(f"{k}={v}" for k, v in sorted(change.params.items()))
    est = change.estimate
    if est.single:
        how = (f"single reading, tolerance {change.threshold:.0%}" if change.threshold is not None
               else "single reading, not judged")
    else:
        how = (f"{change.confidence:.2%} interval {change.low:.3f}-{change.high:.3f} of the ratio ({est.method}), "
               f"threshold {change.threshold:.0%}{' (quiet host)' if change.quiet_host else ''}")
    return (f"{change.suite} {change.metric}[{shown}]: {est.base:.4g} -> {est.new:.4g} {change.unit} "
            f"({change.change_pct:+.1f}%; {how})").replace("  ", " ")


def baseline_of_run(run: Path):
    """The baseline a run was checked against, if it can still be found (its thresholds and
    gates then apply to comparisons with that run)."""
    from bench.analysis.baselines import load_baseline
    from bench.errors import BenchError
    from bench.records.results import RunManifest

    run = Path(run)
    try:
        name = RunManifest.read(run if run.is_dir() else run.parent).baseline
        if not name:
            return None
        return load_baseline(name if Path(name).is_file() else Path(name).stem)
    except BenchError:
        return None
