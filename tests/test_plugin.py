"""The plugin's options as a user meets them: every bad input is one clear line and exit code 4
(pytest's usage error) before any case runs, with no traceback."""

import os
import subprocess
import sys

import pytest

from conftest import REPO, make_record


def run_pytest(*args: str, cwd=REPO, env_extra: dict | None = None, timeout: int = 600):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "pytest", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "malformed.toml").write_text("[meta\nname = 1")
    (d / "unknown-metric.toml").write_text('[meta]\nname = "x"\n[checks]\nload_time = { max = 5 }')
    (d / "loose.toml").write_text('[meta]\nname = "x"\n[checks]\ndecode_tok_s = { min = 1, where = { batch_size = 64 } }')
    (d / "not-a-dir").write_text("")
    (d / "corrupt-run").mkdir()
    good = make_record("load_s", 1.0).to_json()
    (d / "corrupt-run" / "results.jsonl").write_text(f"{good}\n{{broken\n{good}\n")
    return d


CASES = [
    (["--profile", "huge"], "--profile huge: unknown profile; choose one of quick, standard, fit, full"),
    (["--model", "no such model!"], "--model no such model!: unknown model"),
    (["--model", "org/not-in-any-cache"], "--model org/not-in-any-cache: org/not-in-any-cache is not in the HF cache"),
    (["--dataset", "{bad}/rows.jsonl"], "--dataset {bad}/rows.jsonl: no such file"),
    (["--dataset", "{bad}"], "--dataset {bad}: give 'builtin', a .json/.jsonl/.csv/.parquet file, or a hub dataset"),
    (["--dataset", "org/not-in-any-cache"], "--dataset org/not-in-any-cache: not in the HF cache"),
    (["--model", "replica:gpt-oss-999b"], "--model replica:gpt-oss-999b: no bundled config; available: gpt-oss-20b"),
    (["--backend", "vllm"], "--backend vllm: unknown backend; choose auto, hf, unsloth"),
    (["--backend", "unsloth", "--gpu", "cpu"], "--backend unsloth needs a CUDA GPU"),
    (["--gpu", "0"], "--gpu 0: no NVIDIA GPU is visible on this machine"),
    (["--gpu", "first"], "--gpu first: 'first' is not a GPU index; use e.g. --gpu 0"),
    (["--baseline", "{bad}/malformed.toml"], "malformed.toml: not valid TOML"),
    (["--baseline", "{bad}/unknown-metric.toml"], "unknown metric 'load_time'"),
    (["--baseline", "{bad}/loose.toml"], "check 'decode_tok_s >= 1 where batch_size=64' matches no case of profile quick"),
    (["--baseline", "nonexistent"], "--baseline nonexistent: no such file or baseline name"),
    (["--report-dir", "{bad}/not-a-dir/reports"], "--report-dir {bad}/not-a-dir/reports: cannot write there"),
    (["--compare", "{bad}/missing-run"], "--compare {bad}/missing-run: no such run directory or results file"),
    (["--compare", "{bad}/corrupt-run"], "results.jsonl:2: corrupt record"),
    (["--resume", "{bad}/missing-run"], "--resume {bad}/missing-run: {bad}/missing-run: no manifest.json"),
    (["--report-dir", "{bad}", "--run-id", "corrupt-run"], "--run-id corrupt-run: {bad}/corrupt-run already holds a run"),
    (["--precision", "3bit"], "--precision 3bit: choose one of auto, 4bit, bf16"),
    (["--threshold", "lots"], "--threshold lots: give a percentage like 5% or a fraction like 0.05"),
    (["--model", "replica:gpt-oss-20b@depth=2"], "the only override is @layers=N"),
    (["--shard", "2/2"], "--shard 2/2: shard indices run from 0 to 1"),
    (["--shard", "half"], "--shard half: write it as i/n with 0 <= i < n"),
    (["--backend", "hf,hf"], "--backend hf,hf: name each engine once"),
    (["--workers-per-gpu", "0"], "--workers-per-gpu 0: give 1 or more"),
    (["--gpu", "cpu", "--each-gpu"], "--each-gpu needs several GPUs"),
    (["--backend", "hf,unsloth", "--gpu", "cpu"], "--backend unsloth needs a CUDA GPU"),
    (["--backend", "hf,vllm"], "--backend vllm: unknown backend"),
    (["--endpoint", "http://127.0.0.1:9"], "--endpoint http://127.0.0.1:9: cannot connect"),
    (["--endpoint", "localhost:8000"], "--endpoint localhost:8000: give an http(s) URL like http://localhost:8000"),
    (["--slo", "ttft=fast"], "--slo ttft=fast: 'fast' is not a duration; write it like 2s or 100ms"),
    (["--slo", "latency=1s"], "--slo latency=1s: unknown objective 'latency'"),
    (["--gpu-price-per-hour", "cheap"], "--gpu-price-per-hour cheap: neither a number nor a TOML price table"),
    (["--gpu-price-per-hour", "{bad}/malformed.toml"], "not valid TOML"),
]


@pytest.mark.skipif(bool(__import__("bench.telemetry.devices", fromlist=["nvml_gpus"]).nvml_gpus()),
                    reason="these expectations are for a machine without GPUs")
@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_is_one_line_and_exit_4(bad_files, args, message):
    args = [a.replace("{bad}", str(bad_files)) for a in args]
    result = run_pytest("suites/", "--collect-only", "-q", *args)
    assert result.returncode == 4, result.stdout + result.stderr
    assert message.replace("{bad}", str(bad_files)) in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1, result.stderr


def test_options_are_listed_in_help():
    out = run_pytest("--help").stdout
    for option in ("--gpu", "--model", "--backend", "--profile", "--baseline", "--compare",
                   "--fail-on-regression", "--report-dir", "--dataset"):
        assert option in out


def test_profiles_parametrize_the_suites():
    quick = run_pytest("suites/", "--collect-only", "-q").stdout
    standard = run_pytest("suites/", "--collect-only", "-q", "--profile", "standard").stdout
    full = run_pytest("suites/", "--collect-only", "-q", "--profile", "full").stdout

    def cases(out: str, test: str) -> list[str]:
        return [line.split("::")[-1] for line in out.splitlines() if f"::{test}[" in line]

    # quick's generation cases are the seed's points; standard sweeps batch sizes at medium beside
    # them; full crosses every batch size with every effort
    seed = ["test_generate[bs1-low]", "test_generate[bs1-medium]", "test_generate[bs1-high]",
            "test_generate[bs2-medium]", "test_generate[bs3-medium]"]
    assert cases(quick, "test_generate") == seed
    assert cases(standard, "test_generate") == seed + ["test_generate[bs4-medium]", "test_generate[bs8-medium]"]
    assert len(cases(full, "test_generate")) == 18 and "test_generate[bs16-high]" in full
    # training: quick one case; standard the ranks at 2x8 and 4x4 at rank 8; full every rank at every shape
    assert cases(quick, "test_train") == ["test_train[r8-b2x2]"]
    assert cases(standard, "test_train") == ["test_train[r8-b2x8]", "test_train[r8-b4x4]", "test_train[r16-b2x8]",
                                             "test_train[r32-b2x8]"]
    assert len(cases(full, "test_train")) == 12 and "test_train[r64-b1x16]" in full
    # the workflow's order: load first, so the cold load is the first load of the process
    lines = [line for line in full.splitlines() if "::" in line]
    assert "test_load.py" in lines[0] and "test_serve.py" in lines[-1]


def test_quick_leaves_out_the_scenarios_unless_their_file_is_named(tmp_path):
    quick = run_pytest("suites/", "--collect-only", "--gpu", "cpu")
    assert "test_adapter_roundtrip" in quick.stdout and "test_serve[" not in quick.stdout
    assert "test_concurrency[" not in quick.stdout and "5 deselected" in quick.stdout
    assert ("profile quick leaves out concurrency (2 cases) and serve (3 cases): --profile full runs them, "
            "as does naming the file (pytest suites/test_concurrency.py suites/test_serve.py)") in quick.stdout
    # named by path, by node id or (--pyargs) by module: the suite runs under quick's grid
    named = run_pytest("suites/", "suites/test_serve.py", "--collect-only", "-q", "--gpu", "cpu").stdout
    assert "test_serve.py::test_serve[transformers-cb-c1]" in named and "test_concurrency[" not in named
    node = run_pytest("suites/test_concurrency.py::test_concurrency", "--collect-only", "-q", "--gpu", "cpu").stdout
    assert "test_concurrency[shared]" in node and "deselected" not in node
    module = run_pytest("--pyargs", "bench.suites.test_concurrency", "--collect-only", "-q", "--gpu", "cpu",
                        cwd=tmp_path).stdout
    assert "test_concurrency[shared]" in module and "deselected" not in module
    # a -k expression selects among the profile's cases, and the run says what it left out
    picked = run_pytest("suites/", "-k", "shared", "--collect-only", "--gpu", "cpu").stdout
    assert "no tests collected" in picked and "profile quick leaves out concurrency" in picked
    assert "deselected" not in run_pytest("suites/", "--collect-only", "-q", "--profile", "full").stdout


def test_harness_tests_leave_no_run_directory(tmp_path):
    (tmp_path / "test_plain.py").write_text("def test_ok():\n    assert True\n")
    result = run_pytest(str(tmp_path / "test_plain.py"), "-q", "--report-dir", str(tmp_path / "reports"),
                        cwd=tmp_path)
    assert "--report-dir" not in result.stderr, "the plugin is not installed (pip install -e .)"
    assert result.returncode == 0, result.stdout + result.stderr
    assert not list((tmp_path / "reports").glob("*"))


def test_collect_only_and_a_refused_run_leave_no_run_directory(tmp_path):
    reports = tmp_path / "reports"
    listed = run_pytest("suites/", "--collect-only", "-q", "--gpu", "cpu", "--report-dir", str(reports))
    assert listed.returncode == 0 and "15 tests collected" in listed.stdout
    refused = run_pytest("suites/", "--gpu", "cpu", "--model", "no such model!", "--report-dir", str(reports))
    assert refused.returncode == 4 and refused.stderr.count("unknown model") == 1
    assert not reports.exists() or not any(reports.iterdir())


def test_require_checks_refuses_a_run_no_baseline_matches(tmp_path):
    model = tmp_path / "my-model"
    model.mkdir()
    refused = run_pytest("suites/test_load.py", "--gpu", "cpu", "--model", str(model), "--report-dir",
                         str(tmp_path / "reports"), "--require-checks")
    assert refused.returncode == 4
    assert f"--require-checks: no baseline matched {model} on this CPU: nothing was checked" in refused.stderr
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").iterdir())


def test_a_missing_dependency_is_one_line_saying_how_to_install(tmp_path):
    # an environment the checkout was copied into without installing it: platformdirs absent
    fake = tmp_path / "platformdirs"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'platformdirs'\", name='platformdirs')\n")
    env = {k: v for k, v in os.environ.items() if k != "BENCH_CACHE_DIR"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # other installed plugins may import it too, before ours
    plugins = ["-p", "bench.harness.plugin", "-p", "pytest_benchmark.plugin", "-p", "pytest_timeout"]
    result = subprocess.run([sys.executable, "-m", "pytest", *plugins, "suites/", "--collect-only", "-q", "--gpu", "cpu"],
                            cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 4, result.stdout[-2000:] + result.stderr[-2000:]
    assert "the module 'platformdirs' is missing: pip install -e ." in result.stderr
    assert "Traceback" not in result.stderr + result.stdout and "INTERNALERROR" not in result.stdout
