"""The whole loop as a new user runs it: `pytest suites/` on the built-in tiny model, on the CPU."""

import json
import re
import subprocess
import sys

import pytest

from bench.records.results import RunManifest, read_results

from conftest import REPO
from test_plugin import run_pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e")
    result = run_pytest("suites/", "-q", "--gpu", "cpu", "--report-dir", str(out), "--run-id", "quick",
                        "--benchmark-json", str(out / "benchmark.json"))
    return result, out / "quick", out


@pytest.fixture(scope="module")
def scenario_run(tmp_path_factory):
    """The two suites quick leaves out of `pytest suites/`, run by naming their files."""
    out = tmp_path_factory.mktemp("e2e-scenarios")
    result = run_pytest("suites/test_concurrency.py", "suites/test_serve.py", "-q", "--gpu", "cpu",
                        "--report-dir", str(out), "--run-id", "scenarios")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return read_results(out / "scenarios")


def test_quick_profile_passes_every_documented_check(quick_run):
    result, run_dir, _ = quick_run
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "gpt-oss bench" in result.stdout and "report:" in result.stdout


def test_every_case_wrote_its_metrics(quick_run):
    result, run_dir, _ = quick_run
    records = read_results(run_dir)
    assert not [r for r in records if r.status != "ok"]
    # quick's suites: the seed's workload; the scenarios are a file name away, and the run says so
    assert {r.suite for r in records} == {"load", "infer", "train", "adapter"}
    left_out = ("profile quick leaves out concurrency (2 cases) and serve (3 cases): --profile full runs them, "
                "as does naming the file (pytest suites/test_concurrency.py suites/test_serve.py)")
    assert left_out in RunManifest.read(run_dir).notes and f"not run: {left_out}" in result.stdout
    by = {}
    for r in records:
        by.setdefault(r.metric, []).append(r)
    assert {r.params["cache"] for r in by["load_s"]} == {"cold", "warm"}
    assert len(by["decode_tok_s"]) == 5  # the seed's points: batch 1 at each effort, batch 2 and 3 at medium
    assert all(len(r.samples) == 3 for r in by["decode_tok_s"])  # warm-up round not among them
    [train] = by["s_per_step"]
    assert len(train.samples) == 29  # 30 steps, the first one is the warm-up
    assert len(train.extra["loss_curve"]) == 30
    [initial], [final] = by["initial_loss"], by["final_loss"]
    assert initial.value > 1.5 > final.value  # real training brought the loss under the target
    assert by["adapter_roundtrip_equal"][0].value == 1.0
    assert by["resume_loss_delta"][0].value < 0.02
    assert by["adapter_mb"][0].value > 0 and by["trainable_params_m"][0].value > 0
    # what the rest of the host did beside each case that runs in this process
    others = {r.suite for r in by["others_cpu_cores"]}
    assert others == {"load", "train", "infer", "adapter"}
    assert all(r.value >= 0 and r.extra["cores"] >= 1 for r in by["others_cpu_cores"])


def test_the_scenarios_run_when_their_files_are_named(scenario_run):
    records = scenario_run
    not_ok = [r for r in records if r.status != "ok"]
    [split] = not_ok  # the concurrency suite's two-GPU placement, skipped on the CPU with why
    assert split.status == "skipped" and split.params["placement"] == "split" and "two GPUs" in split.error
    by = {}
    for r in records:
        by.setdefault(r.metric, []).append(r)
    # quick serves with continuous batching only: c1, c4 (two levels, no saturation to stop at) and
    # Poisson at 0.9x, two rounds each
    points = by["output_tok_s"]
    assert {r.params["server"] for r in points} == {"transformers-cb"}
    assert len(points) == 3 and all(len(r.samples) == 2 for r in points)
    assert {"request_rate"} <= {k for r in points for k in r.params}  # the open-loop point ran
    for side in ("train", "serve"):  # training and serving on one device: each side's retained throughput
        [retained] = by[f"{side}_retained"]
        assert retained.params["placement"] == "shared" and 0 < retained.extra["low"] <= retained.value
        assert retained.value <= retained.extra["high"] and len(by[f"{side}_tok_s_together"][0].samples) >= 2
    # the others' CPU is not recorded beside cases whose work runs in processes they start: it would
    # be their own
    assert "others_cpu_cores" not in by
    # the concurrency case files its two processes' set-up as one-off costs
    [shared] = [r for r in by["case_s"] if r.params.get("placement") == "shared"]
    assert {"engine import", "set-up of the two sides"} <= set(shared.extra["phases"])


def test_run_directory_holds_manifest_report_and_summary(quick_run):
    _, run_dir, _ = quick_run
    manifest = RunManifest.read(run_dir)
    assert manifest.status == "complete" and manifest.model == "tiny-gpt-oss" and manifest.backend == "hf"
    assert manifest.versions["torch"] and manifest.baseline.endswith("tiny-gpt-oss-cpu.toml")
    html = (run_dir / "report.html").read_text()
    assert "<svg" in html and "final_loss &lt;= 1.5" in html
    assert "checks passed, 0 failed" in (run_dir / "summary.md").read_text()
    # the compilers' caches go with the prepared models, not into the directory the run started in
    assert manifest.environment["UNSLOTH_COMPILE_LOCATION"].endswith("compile/unsloth_compiled_cache")


def test_the_run_says_where_its_time_went(quick_run):
    """Every measured case records its setup, call and timed seconds; the run's wall time covers
    them all, and the report, summary.md and the terminal say how much was overhead."""
    result, run_dir, _ = quick_run
    manifest = RunManifest.read(run_dir)
    wall = manifest.timings["run_wall_s"]
    times = {r.test_id: r for r in read_results(run_dir) if r.metric == "case_s"}
    train = times["suites/test_train.py::test_train[r8-b2x2]"]
    steps = next(r for r in read_results(run_dir) if r.metric == "s_per_step")
    assert train.extra["timed_s"] == pytest.approx(sum(steps.samples), rel=1e-3)  # the warm-up step not in it
    assert 0 < train.extra["timed_s"] < train.extra["call_s"] <= train.value
    assert times["suites/test_train.py::test_resume"].extra["timed_s"] == 0  # a correctness check times nothing
    assert {"load and LoRA", "trainer set-up", "warm-up step"} <= set(train.extra["phases"])
    # a check that trains in its own process files that process's first step (its compilation) as a
    # one-off, as the training case does
    for check, training in (("test_adapter.py::test_adapter_roundtrip", "training"),
                            ("test_train.py::test_resume", "uninterrupted training")):
        phases = times[f"suites/{check}"].extra["phases"]
        assert 0 < phases["warm-up step"] and 0 < phases[training], check
    assert 0 < manifest.timings["startup_s"] < sum(r.value for r in times.values()) < wall
    # what a user's script imports came first, once: a one-off cost; the model stack the engine
    # imports on first use is in the cold load, as in a user's first load, and not in the warm one
    assert 0 < manifest.timings["engine_import_s"] == manifest.timings["import_hf_s"]
    loads = {r.params["cache"]: r for r in read_results(run_dir) if r.metric == "load_s"}
    assert loads["cold"].extra["modules_imported"] > 100 and loads["warm"].extra["modules_imported"] == 0
    assert "Where the run's time went" in (run_dir / "summary.md").read_text()
    assert 'id="time-budget"' in (run_dir / "report.html").read_text()
    assert re.search(r"time: [\d.]+ s; timed rounds [\d.]+ s \(\d+%\), one-off costs .* harness overhead", result.stdout)


def test_pytest_benchmark_output_keeps_working(quick_run):
    _, _, out = quick_run
    data = json.loads((out / "benchmark.json").read_text())
    names = {b["name"] for b in data["benchmarks"]}
    assert "test_train[r8-b2x2]" in names and "test_generate[bs1-low]" in names
    train = next(b for b in data["benchmarks"] if b["name"] == "test_train[r8-b2x2]")
    assert train["stats"]["rounds"] == 29 and "loss_curve" in train["extra_info"]


def test_a_missed_check_fails_the_case_naming_value_limit_and_source(tmp_path):
    baseline = tmp_path / "impossible.toml"
    baseline.write_text('[meta]\nname = "impossible"\nmodel = "tiny-gpt-oss"\n[checks]\n'
                        'decode_tok_s = { min = 1000000.0, where = { batch_size = 1 } }\n')
    result = run_pytest("suites/test_infer.py", "-q", "--gpu", "cpu", "-k", "bs1-low", "--baseline", str(baseline),
                        "--report-dir", str(tmp_path / "reports"), "--benchmark-disable")
    assert result.returncode == 1
    assert "baseline check failed" in result.stdout
    assert "misses min 1e+06 tok/s (baseline 'impossible')" in result.stdout
    [run_dir] = list((tmp_path / "reports").iterdir())
    assert any(r.metric == "decode_tok_s" and r.status == "ok" for r in read_results(run_dir))  # measured, kept


@pytest.fixture(scope="module")
def compared_run(quick_run, tmp_path_factory):
    """A second run of some cases, compared with the quick run during the session (JUnit XML too)."""
    _, base_dir, _ = quick_run
    out = tmp_path_factory.mktemp("compared")
    result = run_pytest("suites/test_infer.py", "suites/test_train.py::test_train", "-q", "--gpu", "cpu",
                        "--benchmark-disable", "--compare", str(base_dir), "--report-dir", str(out), "--run-id", "again",
                        "--junitxml", str(out / "junit.xml"))
    return result, base_dir, out / "again", out


def _counts_in(text: str) -> tuple[int, ...]:
    match = re.search(r"(\d+) regressions\**, (\d+) improvements, (\d+) inconclusive, (\d+) unchanged", text)
    assert match, text[-2000:]
    return tuple(int(g) for g in match.groups())


def test_every_view_of_one_comparison_gives_the_same_counts(compared_run, tmp_path):
    result, base_dir, run_dir, out = compared_run
    assert result.returncode == 0, result.stdout[-3000:]  # without --fail-on-regression a regression only reports
    data = json.loads((run_dir / "comparison.json").read_text())
    expected = tuple(data["counts"][v] for v in ("regression", "improvement", "inconclusive", "unchanged"))
    assert sum(expected) == len([c for c in data["changes"] if c["gates"]]) > 10
    assert _counts_in(result.stdout.split("compared with", 1)[1]) == expected  # the terminal
    assert _counts_in((run_dir / "comparison.md").read_text()) == expected
    props = dict(re.findall(r'<property name="(comparison_\w+)" value="(\d+)"', (out / "junit.xml").read_text()))
    assert tuple(int(props[f"comparison_{v}"]) for v in ("regression", "improvement", "inconclusive", "unchanged")) \
        == expected
    cli = subprocess.run([sys.executable, "-m", "bench", "compare", str(base_dir), str(run_dir)], capture_output=True,
                         text=True, cwd=REPO)
    assert _counts_in(cli.stdout) == expected and cli.returncode == (1 if data["failed"] else 0)
    md = subprocess.run([sys.executable, "-m", "bench", "compare", str(base_dir), str(run_dir), "--format", "markdown"],
                        capture_output=True, text=True, cwd=REPO)
    assert _counts_in(md.stdout) == expected and "&lt;" not in md.stdout
    page = tmp_path / "page.html"
    subprocess.run([sys.executable, "-m", "bench", "report", str(base_dir), str(run_dir), "-o", str(page)],
                   check=True, capture_output=True, cwd=REPO)
    assert _counts_in(page.read_text()) == expected
    for change in data["changes"]:  # the change shown is the estimator's: its sign never contradicts the columns
        assert (change["new"] - change["base"]) * change["change_pct"] >= 0
        assert change["ci_low"] <= change["ratio"] <= change["ci_high"]


def test_a_saved_baseline_is_picked_up_and_passed_by_the_next_run(quick_run, tmp_path):
    _, base_dir, _ = quick_run
    mine = tmp_path / "my-baselines"
    saved = subprocess.run([sys.executable, "-m", "bench", "baseline", "save", str(base_dir), "--name", "my-cpu",
                            "--dir", str(mine)], capture_output=True, text=True, cwd=REPO)
    assert saved.returncode == 0, saved.stderr
    text = (mine / "my-cpu.toml").read_text()
    assert 'profile = "quick"' in text and "one run" in text
    result = run_pytest("suites/test_train.py", "-q", "--gpu", "cpu",
                        "--benchmark-disable", "--baseline-dir", str(mine), "--report-dir", str(tmp_path / "r"),
                        "--run-id", "after")
    assert result.returncode == 0, result.stdout[-3000:]
    manifest = RunManifest.read(tmp_path / "r" / "after")
    assert manifest.baseline.endswith("my-cpu.toml")  # the user's directory comes before the shipped baselines
    assert re.search(r"checks: (\d+) passed, 0 failed", result.stdout)


def test_compare_during_a_run_names_only_what_this_run_lacks(quick_run, tmp_path):
    _, base_dir, _ = quick_run
    result = run_pytest("suites/test_infer.py", "-q", "--gpu", "cpu", "-k", "bs1-low", "--benchmark-disable",
                        "--compare", str(base_dir), "--threshold", "50%", "--report-dir", str(tmp_path),
                        "--run-id", "again")
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"compared with {base_dir}:" in result.stdout
    md = (tmp_path / "again" / "comparison.md").read_text()
    lacking = md.split("Measured in the base run only:", 1)[1].split("\n\n", 1)[0]
    assert "infer decode_tok_s: 4 cases" in lacking  # the other four were not run this time; bs1-low was compared
