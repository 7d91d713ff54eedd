"""The cross-check's arithmetic (bench.analysis.fidelity), its table (bench.report.fidelity_table) and
what the driver tells each side (bench.fidelity.crosscheck), without running either side."""

from __future__ import annotations

import json
import math
import os

import pytest

from bench.analysis.fidelity import AGREES, FINDING, UNRESOLVED, FigureCheck, judge, repeats_to_resolve
from bench.fidelity.crosscheck import Setup, figures, harness_command, plain_spec, setup_for_run, suites_dir
from bench.models import resolve_model
from bench.records.profiles import PROFILES
from bench.report.fidelity_table import fidelity_headline, fidelity_rows

from conftest import make_record, write_run


def check(harness, plain, tolerance=0.10, metric="decode_tok_s"):
    return FigureCheck(metric, "infer", {"batch_size": 1, "effort": "low"}, harness, plain, tolerance)


def test_the_ratio_is_the_harness_over_the_plain_script_from_paired_repeats():
    c = check([[8.0, 8.0], [9.0]], [[10.0], [10.0, 10.0]])
    ratio, low, high = c.interval
    assert ratio == pytest.approx(math.sqrt(0.8 * 0.9))
    assert c.per_repeat == pytest.approx([0.8, 0.9]) and low < ratio < high


def test_repeats_that_agree_exactly_agree_and_a_slowed_harness_is_a_finding():
    same = check([[14.8], [14.8], [14.8]], [[14.8], [14.8], [14.8]], tolerance=0.05, metric="peak_vram_gb")
    assert same.interval == (1.0, 1.0, 1.0) and same.verdict == AGREES
    slowed = check([[6.9], [7.1], [7.0]], [[10.0], [10.4], [9.8]])
    assert slowed.verdict == FINDING and slowed.interval[2] < 0.9


def test_a_ratio_within_tolerance_with_an_interval_beyond_it_is_unresolved():
    noisy = check([[10.0], [12.0], [8.5]], [[10.0], [9.0], [10.5]])
    ratio, low, high = noisy.interval
    assert 0.9 <= ratio <= 1.1 and (low < 0.9 or high > 1.1)
    assert noisy.verdict == UNRESOLVED


def test_a_ratio_beyond_tolerance_whose_interval_holds_one_is_unresolved_not_a_finding():
    scattered = check([[14.5], [8.3], [14.5]], [[15.0], [13.4], [15.2]])  # one slow spell of the host
    ratio, low, high = scattered.interval
    assert ratio < 0.9 and low < 1 < high
    assert scattered.verdict == UNRESOLVED


@pytest.mark.parametrize("sd", [0.1, 0.2, 0.3])
@pytest.mark.parametrize("repeats", [3, 5])
def test_findings_on_an_unchanged_harness_stay_near_the_intervals_level_however_the_host_scatters(sd, repeats):
    """Synthetic repeats, per-repeat log ratios drawn around 0 (an unchanged harness) and around
    log 0.7 (a harness 30% slow): the interval rule keeps false findings near 5% where the ratio
    alone made up to 57% of them, and a 30% gap is never called agreement."""
    import numpy as np

    rng = np.random.default_rng(7)

    def verdicts(true_ratio: float) -> list[str]:
        out = []
        for _ in range(400):
            ratios = np.exp(rng.normal(math.log(true_ratio), sd, repeats))
            out.append(check([[float(r) * 10] for r in ratios], [[10.0]] * repeats).verdict)
        return out

    unchanged, slowed = verdicts(1.0), verdicts(0.7)
    assert unchanged.count(FINDING) / len(unchanged) <= 0.08
    assert AGREES not in slowed and slowed.count(FINDING) > 0


@pytest.mark.parametrize("true_ratio, sd", [(1.03, 0.08), (0.97, 0.04), (0.8, 0.15)])
def test_the_repeats_suggested_for_an_unresolved_figure_resolve_it_about_as_often_as_promised(true_ratio, sd):
    """Measured as the 20B replica's decode was (a ratio near 1, repeats scattering 8%), and beyond
    the tolerance: the suggestion, made from repeats that scatter exactly as the host does, gives a
    verdict in about 80% of cross-checks of that many repeats, and the right one."""
    import numpy as np

    centre = math.log(true_ratio)
    measured = [math.exp(centre - sd), math.exp(centre), math.exp(centre + sd)]  # sd of the logs: exactly `sd`
    n = repeats_to_resolve(measured, 0.10)
    assert n is not None and n > 3
    rng = np.random.default_rng(11)
    verdicts = [check([[float(r) * 10] for r in np.exp(rng.normal(centre, sd, n))], [[10.0]] * n).verdict
                for _ in range(400)]
    expected = AGREES if 0.9 <= true_ratio <= 1.1 else FINDING
    assert 0.7 <= verdicts.count(expected) / len(verdicts) and verdicts.count(UNRESOLVED) <= 0.3 * len(verdicts)


def test_no_repeats_are_suggested_without_scatter_to_go_by_or_beyond_reason():
    assert repeats_to_resolve([1.02], 0.10) is None  # one repeat
    assert repeats_to_resolve([0.6, 1.5, 0.9], 0.10) is None  # more than 30 on a host this noisy
    assert repeats_to_resolve([0.5, 0.55, 0.45], 0.10) <= 3  # a gap this plain needs few


def test_one_repeat_has_no_interval_and_is_judged_by_its_ratio():
    assert judge(1.02, 1.02, 1.02, 0.10, repeats=1) == UNRESOLVED
    assert judge(0.7, 0.7, 0.7, 0.10, repeats=1) == FINDING
    with pytest.raises(ValueError, match="each repeat needs samples of both sides"):
        check([[1.0]], [])


def test_the_table_shows_the_latest_cross_check_with_the_first_load_beside_it():
    def ratio(value, verdict, stamp, figure="decode_tok_s", **params):
        return make_record("fidelity_ratio", value, suite="infer", extra={
            "low": value * 0.95, "high": value * 1.05, "verdict": verdict, "tolerance": 0.1, "unit": "tok/s",
            "harness": [[value * 10]], "plain": [[10.0]], "repeats": 3, "crosscheck": stamp},
            figure=figure, **params)

    records = [ratio(0.5, FINDING, "20260101-000000", batch_size=1, effort="low"),
               ratio(0.98, AGREES, "20260102-000000", batch_size=1, effort="low"),
               ratio(0.69, FINDING, "20260102-000000", batch_size=1, effort="high"),
               make_record("load_s", 2.4, samples=[2.4], cache="first")]
    rows = fidelity_rows(records)
    assert [(r["case"], r["ratio"]) for r in rows[:2]] == [("cache=first", None), ("batch_size=1, effort=low", 0.98)]
    assert rows[2]["harness"] == pytest.approx(6.9) and rows[2]["plain"] == pytest.approx(10.0)
    line = fidelity_headline(rows)
    assert line.startswith("cross-check against a plain script (3 interleaved repeats): 1 of 2 figures agree")
    assert "decode_tok_s batch_size=1, effort=high: harness/plain 0.69x (0.655-0.724)" in line
    assert fidelity_headline([]) is None


def test_an_unresolved_figure_says_how_many_repeats_would_resolve_it(tmp_path):
    from bench.report import render_run

    def unresolved(samples, **params):
        return make_record("fidelity_ratio", math.exp(sum(map(math.log, samples)) / 3), suite="infer",
                           samples=samples, extra={"low": 0.85, "high": 1.27, "verdict": UNRESOLVED, "tolerance": 0.1,
                                                   "unit": "tok/s", "harness": [[13.5]] * 3, "plain": [[13.0]] * 3,
                                                   "repeats": 3, "crosscheck": "20261207-173559"},
                           figure="decode_tok_s", **params)

    records = [unresolved([0.991, 1.138, 0.992], batch_size=1, effort="high"),
               unresolved([1.04, 0.951, 0.97], batch_size=2, effort="medium")]
    rows = fidelity_rows(records)
    assert [r["repeats_to_resolve"] for r in rows] == [17, 5]
    assert fidelity_headline(rows).endswith("2 unresolved (at the scatter measured, --crosscheck-repeats 17 "
                                            "would likely resolve them)")
    html, md = render_run(write_run(tmp_path, "run-a", records))
    assert "unresolved (about 17 repeats would tell)" in md.read_text()
    assert "unresolved (about 5 repeats would tell)" in html.read_text()


def _setup(profile="quick", gpu="cpu", model="tiny-gpt-oss") -> Setup:
    return Setup(engine="hf", target="/weights", gpu=gpu, source=resolve_model(model), profile=PROFILES[profile],
                 four_bit=False, options={"--model": model, "--backend": "hf", "--profile": profile},
                 suites_dir=suites_dir(), environment={"OMP_NUM_THREADS": "1"})


def test_the_figures_are_the_runs_headline_points_and_memory_only_on_a_gpu():
    names = [(f.metric, tuple(f.params.values())) for f in figures(_setup("standard"))]
    assert names[:2] == [("load_s", ("cold",)), ("load_s", ("warm",))]
    assert len([n for n in names if n[0] == "decode_tok_s"]) == len(PROFILES["standard"].generations) == 7
    assert names[-1] == ("s_per_step", (8, 2, 8))
    assert figures(_setup("standard", gpu="0"))[-1].metric == "peak_vram_gb"


def test_the_harness_side_runs_the_runs_cases_with_its_options_and_no_cross_check_of_its_own(tmp_path):
    command = harness_command(_setup(), tmp_path / "crosscheck" / "harness-0")
    nodeids = [a for a in command if "::" in a]
    assert [n.rsplit("::", 1)[1] for n in nodeids] == [
        "test_load[cold]", "test_load[warm]", "test_generate[bs1-low]", "test_generate[bs1-medium]",
        "test_generate[bs1-high]", "test_generate[bs2-medium]", "test_generate[bs3-medium]", "test_train[r8-b2x2]"]
    assert all(n.startswith(str(suites_dir())) for n in nodeids)
    joined = " ".join(command)
    assert "--model tiny-gpt-oss --backend hf --profile quick --gpu cpu --crosscheck off --plain-control" in joined
    assert f"--report-dir {tmp_path / 'crosscheck'} --run-id harness-0" in joined


def test_the_plain_script_is_told_the_harnesss_prompts_and_training_settings(tmp_path):
    spec = plain_spec(_setup(), tmp_path)
    assert spec["engine"] == "hf" and spec["model"] == "/weights" and spec["device"] == "cpu"
    assert [(p["batch_size"], p["effort"], p["new_tokens"]) for p in spec["generate"]] == [
        (1, "low", 16), (1, "medium", 32), (1, "high", 64), (2, "medium", 32), (3, "medium", 32)]
    # the harness's prompts: the first rows' turns up to the answer
    assert len(spec["generate"][4]["conversations"]) == 3
    assert all(m["role"] != "assistant" for c in spec["generate"][4]["conversations"] for m in c)
    train = spec["train"]
    assert (train["batch_size"], train["grad_accum"], train["steps"]) == (2, 2, 30)
    assert train["learning_rate"] == 2e-3 and train["fixed_length"] is None and len(train["conversations"]) == 3000
    replica = plain_spec(_setup(model="replica:gpt-oss-20b", gpu="0"), tmp_path)["train"]
    assert (replica["steps"], replica["learning_rate"], replica["fixed_length"]) == (8, 2e-4, 1024)


def test_a_run_of_several_engines_is_refused_with_what_to_run_instead(tmp_path):
    from bench.errors import BenchError

    run = write_run(tmp_path, "two", [make_record("load_s", 1.0, cache="cold")],
                    gpus=[{"index": 0, "name": "A"}, {"index": 1, "name": "A"}])
    with pytest.raises(BenchError, match="one engine on one device"):
        setup_for_run(run)


def test_a_run_narrowed_with_k_is_cross_checked_on_the_cases_it_measured(tmp_path):
    from dataclasses import replace

    setup = replace(_setup("standard", gpu="0"),
                    measured=frozenset({"test_load[cold]", "test_generate[bs1-high]", "test_train[r8-b2x8]"}))
    assert [(f.metric, tuple(f.params.values())) for f in figures(setup)] == [
        ("load_s", ("cold",)), ("ttft_s", (1, "high")), ("decode_tok_s", (1, "high")),
        ("s_per_step", (8, 2, 8)), ("peak_vram_gb", (8, 2, 8))]
    command = harness_command(setup, tmp_path / "crosscheck" / "harness-0")
    assert [a.rsplit("::", 1)[1] for a in command if "::" in a] == [
        "test_load[cold]", "test_generate[bs1-high]", "test_train[r8-b2x8]"]
    assert [(p["batch_size"], p["effort"]) for p in plain_spec(setup, tmp_path)["generate"]] == [(1, "high")]
    assert not figures(replace(setup, measured=frozenset({"test_serve[c1]"})))


ALL_FOUR = {"test_load[cold]", "test_load[warm]", "test_generate[bs1-low]", "test_train[r8-b2x2]"}


@pytest.mark.parametrize("measured,gpu,processes,cold_samples", [
    (ALL_FOUR, "cpu", ["train", "load+generate"], 2),  # the CPU runs its cases in one process
    (ALL_FOUR, "0", ["train", "load", "generate"], 3),  # a GPU isolates its groups
    ({"test_load[cold]", "test_train[r8-b2x2]"}, "0", ["train"], 1),  # nothing to load again or generate
    ({"test_load[cold]", "test_load[warm]"}, "0", ["load"], 1),
    ({"test_load[cold]", "test_generate[bs1-low]"}, "0", ["generate"], 1)])
def test_each_repeat_runs_a_users_scripts_as_the_harness_groups_its_cases(
        tmp_path, monkeypatch, measured, gpu, processes, cold_samples):
    """Training in a process of its own; loading again and generating in one more, or in two where
    the harness runs its load and inference groups apart (an inference script that loads once, as a
    user's does); each script's cold load is a sample of the cold figure, and each figure comes from
    the script that measured it."""
    import json
    from dataclasses import replace

    import bench.fidelity.crosscheck as xc

    setup = replace(_setup(gpu=gpu), measured=frozenset(measured))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(plain_spec(setup, tmp_path)))
    ran = []

    def process(part, stem, setup, empty_caches=False):
        kind = "train" if part.get("train") else "+".join(
            name for name, does in (("load", part["warm_loads"]), ("generate", part["generate"])) if does)
        ran.append(kind)
        out = {"started": float(len(ran)), "cold_load_s": 2.0 + len(ran)}
        if part.get("train"):
            assert not part["generate"] and not part["warm_loads"]
            return {**out, "train": {"s_per_step": [0.2]}}
        assert part["warm_loads"] in (0, 2)
        return {**out, **({"warm_load_s": [0.1] * part["warm_loads"]} if part["warm_loads"] else {}),
                **({"generate": [{"batch_size": 1}]} if part["generate"] else {})}

    monkeypatch.setattr(xc, "_plain_process", process)
    run = xc._plain(spec, tmp_path / "plain-0", setup)
    assert ran == processes and len(run["cold_load_s"]) == cold_samples and run["started"] == 1.0
    assert ("train" in run) == ("train" in processes)
    assert run.get("warm_load_s") == ([0.1, 0.1] if "test_load[warm]" in measured else None)
    assert ("generate" in run) == any("generate" in p for p in processes)


@pytest.mark.parametrize("isolate", ["auto", "off", "group", "case"])
@pytest.mark.parametrize("gpu", ["cpu", "0"])
def test_the_plain_script_splits_its_loads_from_its_generation_where_the_harness_does(isolate, gpu):
    from dataclasses import replace

    from bench.fidelity.crosscheck import groups_apart
    from bench.harness.isolate import resolve_mode

    setup = replace(_setup(gpu=gpu), options={**_setup().options, "--isolate": isolate})
    assert groups_apart(setup) == (resolve_mode(isolate, setup.device, child=False) != "off")


def test_a_run_with_nothing_the_cross_check_compares_is_refused(tmp_path):
    from bench.errors import BenchError

    from dataclasses import replace

    served = replace(make_record("load_s", 1.0, cache="cold"), test_id="suites/test_serve.py::test_serve[c1]")
    run = write_run(tmp_path, "serve", [served])
    with pytest.raises(BenchError, match="none of the figures the cross-check compares"):
        setup_for_run(run)


def test_the_instruments_split_a_generation_gap_into_the_harnesss_clock_its_sampler_and_the_rest():
    from bench.fidelity.crosscheck import Figure, _instruments

    figure = Figure("decode_tok_s", "infer", {"batch_size": 1, "effort": "high"})
    # per repeat, three rounds: the script 15 tok/s plainly, 12 with the clock, 10 with clock and sampler
    plain = [[15.0, 15.2, 14.8]] * 3
    runs = [{"generate": [{"batch_size": 1, "effort": "high", "decode_tok_s": p, "instrumented": {
        "clock": {"decode_tok_s": [12.0, 12.1, 11.9], "polls": [0, 0, 0]},
        "clock+sampler": {"decode_tok_s": [10.0, 10.1, 9.9], "polls": [40, 41, 39]}}}]} for p in plain]
    harness = [[10.0, 9.9, 10.1]] * 3
    steps = _instruments(figure, runs, harness, plain)
    assert [(s["side"], s["against"]) for s in steps] == [
        ("plain + clock", "plain"), ("plain + clock+sampler", "plain"), ("harness", "plain + clock+sampler")]
    assert [round(s["ratio"], 2) for s in steps] == [0.8, 0.67, 1.0]
    assert steps[1]["polls"] == 360 and steps[0]["polls"] == 0
    assert all(s["low"] <= s["ratio"] <= s["high"] for s in steps)
    # a point the script did not time the harness's way, and the training figures, have none
    assert _instruments(figure, [{"generate": [{"batch_size": 1, "effort": "high", "decode_tok_s": [1.0]}]}],
                        [[1.0]], [[1.0]]) == []
    assert _instruments(Figure("s_per_step", "train", {}), runs, harness, plain) == []


def test_the_plain_round_hosted_by_pytest_says_what_a_tests_host_costs_the_script():
    from bench.fidelity.crosscheck import HOSTED, Figure, _hosted

    figure = Figure("decode_tok_s", "infer", {"batch_size": 1, "effort": "high"})
    # the script 15 tok/s plainly; the same round run as a pytest test in its process, 13.5
    plain = [[15.0, 15.2, 14.8]] * 3
    runs = [{"generate": [{"batch_size": 1, "effort": "high", "decode_tok_s": p,
                           "hosted": {"decode_tok_s": [13.5, 13.6, 13.4], "ttft_s": [0.09] * 3}}]} for p in plain]
    [step] = _hosted(figure, runs, plain)
    assert (step["side"], step["against"]) == (HOSTED, "plain") and round(step["ratio"], 2) == 0.9
    assert step["low"] <= step["ratio"] <= step["high"] < 1
    # a repeat whose script did not host a round (an older plain script), and training, have none
    older = [{"generate": [{"batch_size": 1, "effort": "high", "decode_tok_s": [15.0]}]}]
    assert _hosted(figure, runs[:2] + older, plain) == []
    assert _hosted(Figure("s_per_step", "train", {}), runs, plain) == []


def test_the_plain_control_in_the_harnesss_process_splits_a_gap_into_its_process_and_its_code_path():
    from bench.fidelity.crosscheck import CONTROL, Figure, _control

    figure = Figure("decode_tok_s", "infer", {"batch_size": 1, "effort": "high"})
    # the plain script 15 tok/s in its own process; the harness's process times the plain way at 12
    # between its rounds (the process costs 20%) and its case reads 12 too (its code path costs nothing)
    plain, harness = [[15.0, 15.2, 14.8]] * 3, [[12.0, 11.9, 12.1]] * 3
    runs = [[make_record("plain_ttft_s", 0.1, samples=[0.1, 0.1, 0.1], batch_size=1, effort="high"),
             make_record("plain_decode_tok_s", 12.0, samples=[12.1, 11.9, 12.0], batch_size=1, effort="high")]] * 3
    steps = _control(figure, runs, harness, plain)
    assert [(s["side"], s["against"]) for s in steps] == [(CONTROL, "plain"), ("harness", CONTROL)]
    assert [round(s["ratio"], 2) for s in steps] == [0.8, 1.0]
    assert all(s["low"] <= s["ratio"] <= s["high"] for s in steps)
    # time to first token against the control's own
    ttft = _control(Figure("ttft_s", "infer", figure.params), runs, [[0.1]] * 3, [[0.08]] * 3)
    assert [round(s["ratio"], 2) for s in ttft] == [1.25, 1.0]
    # a repeat without the control (an older harness), and the figures of other suites, have none
    bare = [make_record("decode_tok_s", 12.0, batch_size=1, effort="high")]
    assert _control(figure, runs[:2] + [bare], harness, plain) == []
    assert _control(Figure("s_per_step", "train", {}), runs, harness, plain) == []


def test_the_plain_script_counts_launches_as_the_harnesss_profiled_round_does():
    """plain.py cannot import the harness, so it keeps its own copy of what the profiled round counts."""
    import importlib.util

    from bench.fidelity import plain
    from bench.telemetry.kernels import LAUNCH_CALLS

    spec = importlib.util.spec_from_file_location("suite_infer", suites_dir() / "test_infer.py")
    infer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(infer)
    assert plain.LAUNCH_CALLS == LAUNCH_CALLS and plain.PROFILED_NEW_TOKENS == infer.PROFILED_NEW_TOKENS


def test_the_plain_scripts_sampler_polls_as_often_as_the_harnesss():
    from bench.fidelity import plain
    from bench.telemetry.sampler import NvmlSampler, ProcessSampler

    assert plain.SAMPLER_INTERVAL_S == NvmlSampler.interval == ProcessSampler.interval
    assert plain._rotated(("plain", "clock", "clock+sampler"), 1) == ("clock", "clock+sampler", "plain")
    with plain.Polling("cpu") as polling:  # psutil here, as the harness's sampler on a CPU
        import time

        time.sleep(0.12)
    assert polling.polls >= 2


def test_the_report_and_summary_show_where_a_generation_gap_comes_from(tmp_path):
    from bench.report.render import render_run

    steps = [{"side": "plain + clock", "against": "plain", "ratio": 0.8, "low": 0.75, "high": 0.85},
             {"side": "harness", "against": "plain + clock+sampler", "ratio": 1.01, "low": 0.9, "high": 1.1}]
    record = make_record("fidelity_ratio", 0.8, suite="infer", extra={
        "low": 0.7, "high": 0.9, "verdict": FINDING, "tolerance": 0.1, "unit": "tok/s", "harness": [[8.0]],
        "plain": [[10.0]], "repeats": 3, "crosscheck": "20261206-000000", "instruments": steps},
        figure="decode_tok_s", batch_size=1, effort="high")
    rows = fidelity_rows([record])
    assert rows[0]["instruments"] == steps
    run_dir = write_run(tmp_path, "instrumented", [record])
    render_run(run_dir)
    html = (run_dir / "report.html").read_text()
    assert 'id="fidelity-instruments"' in html and "plain + clock / plain" in html
    summary = (run_dir / "summary.md").read_text()
    assert "| decode_tok_s | `batch_size=1, effort=high` | harness / plain + clock+sampler | 1.01 (0.9-1.1) |" in summary


def test_a_warm_load_polled_as_the_harnesss_sampler_polls_is_held_against_the_plain_ones():
    from bench.fidelity.crosscheck import Figure, _instruments

    figure = Figure("load_s", "load", {"cache": "warm"})
    runs = [{"warm_load_s": [6.0, 6.2], "warm_load_instrumented": {"sampler": {"load_s": [6.6], "polls": [120]}}}] * 3
    steps = _instruments(figure, runs, [[6.7, 6.5, 6.6]] * 3, [[6.0, 6.2]] * 3)
    assert [(s["side"], s["against"]) for s in steps] == [("plain + sampler", "plain"), ("harness", "plain + sampler")]
    assert steps[0]["ratio"] == pytest.approx(6.6 / (6.0 * 6.2) ** 0.5) and steps[0]["polls"] == 360
    assert _instruments(Figure("load_s", "load", {"cache": "cold"}), runs, [[1.0]] * 3, [[1.0]] * 3) == []


def test_the_process_context_says_what_else_runs_and_how_the_interpreter_is_set(monkeypatch):
    import threading

    import torch  # the context reads torch's settings where the process has imported it

    from bench.fidelity.plain import process_context

    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnop")
    stop = threading.Event()
    helper = threading.Thread(target=stop.wait, name="nvml-sampler", daemon=True)
    helper.start()
    try:
        context = process_context("cpu")
    finally:
        stop.set()
        helper.join()
    assert "MainThread" in context["threads"] and "nvml-sampler" in context["threads"]
    assert context["os_threads"] >= 2 and context["cpus_allowed"] >= 1 and context["switch_interval_s"] > 0
    assert context["environment"]["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    assert "HF_TOKEN" not in context["environment"] and "other_gpu_processes" not in context
    assert context["faulthandler"] is True and context["warning_filters"] >= 1  # as pytest runs this test
    assert context["python_flags"] == [] and context["deterministic"] is False
    assert context["float32_matmul_precision"] in ("highest", "high", "medium")
    assert context["torch_function_modes"] == 0 and context["default_device"] == "cpu"
    assert context["tracemalloc"] is False and isinstance(context["monitoring_tools"], list)
    assert context["modules"] > 100  # torch and pytest at least
    assert context["log_levels"]["root"] in ("NOTSET", "DEBUG", "INFO", "WARNING") and "transformers" in context["log_levels"]
    assert context["log_handlers"] >= 1  # pytest's capture handlers on the root logger
    assert all(kind in ("pipe", "file", "socket", "terminal", "device", "other", "closed") for kind in context["stdio"])
    assert 0 < context["probes"]["python_loop_us"] < context["probes"]["torch_op_us"]  # a torch call costs more
    with torch.device("meta"):  # a mode that intercepts every torch call from Python
        moded = process_context("cpu")
    assert moded["torch_function_modes"] == 1 and moded["default_device"] == "meta"
    json.dumps(context)  # it travels in the plain script's output and the harness's records


def test_the_other_processes_on_the_gpu_are_counted_with_those_sharing_this_ones_parent(monkeypatch):
    import os
    import subprocess
    import sys
    import types

    import bench.fidelity.plain as plain

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert plain._parent(child.pid) == os.getpid()  # read from /proc
    finally:
        child.kill()
        child.wait()
    assert plain._parent(child.pid) is None  # gone
    me, sibling, stranger = os.getpid(), 101, 102
    parents = {sibling: os.getppid(), stranger: 1}
    monkeypatch.setattr(plain, "_parent", parents.get)
    listed = [types.SimpleNamespace(pid=pid) for pid in (me, sibling, stranger)]
    fake = types.SimpleNamespace(nvmlDeviceGetComputeRunningProcesses=lambda handle: listed)
    monkeypatch.setattr(plain, "_nvml_device", lambda: (fake, None))
    assert plain._other_gpu_processes() == (2, 1)
    del listed[0]  # NVML that does not list this process (a container hiding host pids) cannot say
    assert plain._other_gpu_processes() == (None, None)


def test_what_differed_between_the_two_generating_processes_is_listed_setting_by_setting():
    from bench.fidelity.crosscheck import Figure, _context_differences

    figure = Figure("decode_tok_s", "infer", {"batch_size": 1, "effort": "high"})
    common = {"threads": ["MainThread"], "niceness": 0, "environment": {"OMP_NUM_THREADS": "4", "UNSLOTH_SET": "a\nb"},
              "probes": {"python_loop_us": 0.031, "torch_op_us": 6.24}}
    harness_context = {**common, "threads": ["MainThread", "nvml-sampler"], "gc_frozen": 412000,
                       "probes": {"python_loop_us": 0.0312, "torch_op_us": 8.1},
                       "environment": {"OMP_NUM_THREADS": "4", "UNSLOTH_X": "hf_abcdefghijklmnopq",
                                       "UNSLOTH_SET": "b\na"}}  # the same set written in another order
    harness = [[make_record("decode_tok_s", 9.0, suite="infer", batch_size=1, effort="high",
                            extra={"context": harness_context, "cpu_share": share}),
                make_record("launches_per_token", launches, suite="infer", batch_size=1, effort="high")]
               for share, launches in (([0.9, 0.7, 0.8], 2057.0), ([0.6], 2057.25))]
    point = {"batch_size": 1, "effort": "high"}
    plain = [{"generate_context": {**common, "gc_frozen": 0},
              "generate": [{**point, "cpu_share": [1.0, 0.99], "launches_per_token": 1803.5}]}] * 2
    rows = _context_differences(figure, plain, harness)
    assert [r["setting"] for r in rows][4:] == ["environment: UNSLOTH_X", "gc_frozen", "threads"]
    assert rows[0]["harness"] == "0.80, 0.60" and rows[0]["plain"] == "0.99, 0.99"  # measured, per repeat
    assert rows[1]["harness"] == "2057, 2057" and rows[1]["plain"] == "1804, 1804"  # the work itself, per repeat
    assert "pure-Python" in rows[2]["setting"] and rows[2]["harness"] == "0.0312, 0.0312"
    assert "torch op" in rows[3]["setting"] and (rows[3]["harness"], rows[3]["plain"]) == ("8.1, 8.1", "6.24, 6.24")
    assert rows[5] == {"setting": "gc_frozen", "harness": "412000", "plain": "0"}
    assert rows[4]["harness"] == '"***"' and rows[4]["plain"] == "null"  # a credential-like value is redacted
    cpu_run = [[r for r in run if r.metric != "launches_per_token"] for run in harness]
    assert "kernel launches" not in json.dumps(_context_differences(figure, plain, cpu_run))  # none counted
    assert _context_differences(Figure("ttft_s", "infer", figure.params), plain, harness) == []
    older = [{"generate": [point]}] * 2  # an older plain script: nothing to compare
    assert _context_differences(figure, older, harness) == []


def test_the_report_and_summary_list_what_differed_between_the_processes(tmp_path):
    from bench.report.render import render_run

    differences = [{"setting": "threads", "harness": '["MainThread", "<nvml-sampler>"]', "plain": '["MainThread"]'}]
    record = make_record("fidelity_ratio", 0.8, suite="infer", extra={
        "low": 0.7, "high": 0.9, "verdict": FINDING, "tolerance": 0.1, "unit": "tok/s", "harness": [[8.0]],
        "plain": [[10.0]], "repeats": 3, "crosscheck": "20261206-000000", "context_differences": differences},
        figure="decode_tok_s", batch_size=1, effort="high")
    run_dir = write_run(tmp_path, "context", [record])
    render_run(run_dir)
    html = (run_dir / "report.html").read_text()
    assert 'id="fidelity-context"' in html and "&lt;nvml-sampler&gt;" in html and "<nvml-sampler>" not in html
    summary = (run_dir / "summary.md").read_text()
    assert "| `batch_size=1, effort=high` | `threads` |" in summary


def test_a_run_says_which_generation_cases_shared_their_gpu():
    from dataclasses import replace

    from bench.analysis.shared_gpu import shared_gpu_note

    alone = make_record("decode_tok_s", 12.0, suite="infer", batch_size=1, effort="low",
                        extra={"context": {"other_gpu_processes": 0, "other_gpu_siblings": 0}})
    beside = replace(make_record("decode_tok_s", 9.0, suite="infer", batch_size=1, effort="high",
                                 extra={"context": {"other_gpu_processes": 2, "other_gpu_siblings": 1}}), gpu_index=0)
    unknown = make_record("decode_tok_s", 9.0, suite="infer", batch_size=2, effort="medium",
                          extra={"context": {"other_gpu_processes": None}})  # NVML could not say
    ttft = make_record("ttft_s", 0.1, suite="infer", batch_size=1, effort="high",
                       extra={"context": {"other_gpu_processes": 2}})  # one line per case: its decode record's
    assert shared_gpu_note([alone, unknown, ttft]) is None
    note = shared_gpu_note([alone, beside, unknown, ttft])
    assert note.startswith("generation shared its GPU") and note.count("batch_size=") == 1
    assert "batch_size=1, effort=high (2 on GPU 0, 1 of them its siblings)" in note
    assert shared_gpu_note([make_record("decode_tok_s", 9.0, suite="infer", batch_size=1, effort="high")]) is None


def test_the_hosted_round_runs_pytest_alone_whatever_the_environment_asks_of_pytest(monkeypatch):
    """A user's PYTEST_ADDOPTS (here an option of a plugin the hosted session does not load) must not
    break the plain script's pytest-hosted round, and the environment comes back as it was."""
    from bench.fidelity import plain

    monkeypatch.setenv("PYTEST_ADDOPTS", "-n 4 --timeout 30")
    monkeypatch.setenv("PYTEST_PLUGINS", "xdist.plugin")
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    before = dict(os.environ)
    script = plain.Script({"device": "cpu", "engine": "hf"}, None)
    monkeypatch.setattr(plain.Script, "plain_round", lambda self, *args: (0.01, 100.0, 1.0))
    assert script.hosted_round(None, None, ["a prompt"], 4) == (0.01, 100.0)
    assert dict(os.environ) == before
