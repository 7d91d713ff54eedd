"""Faults injected on purpose: out of memory, a killed run, a hung case, secrets in the
environment, broken HF caches. Each must cost nothing already measured."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.models.cache_check import check_hub_cache, check_local_path
from bench.records.results import RunManifest, read_results

from conftest import REPO
from test_plugin import run_pytest

SUITE_ARGS = ["--gpu", "cpu", "--benchmark-disable", "-p", "no:warnings"]
# one generation case per batch size of the quick profile: bs1-low, bs2-medium, bs3-medium
EACH_BATCH = "bs1-low or bs2 or bs3"


@pytest.mark.slow
def test_out_of_memory_is_its_own_status_and_the_next_case_runs(tmp_path):
    result = run_pytest("suites/test_infer.py", "-q", "-k", EACH_BATCH, "--report-dir", str(tmp_path), "--run-id", "oom",
                        *SUITE_ARGS, env_extra={"BENCH_TEST_OOM_AT_BATCH": "2"})
    assert result.returncode == 1, result.stdout[-2000:]
    records = read_results(tmp_path / "oom")
    [oom] = [r for r in records if r.metric == "case"]
    assert oom.status == "oom" and oom.params == {"batch_size": 2, "effort": "medium"}
    assert "out of memory" in oom.error
    assert any(r.metric == "peak_rss_gb" and r.params["batch_size"] == 2 for r in records)  # the peak it reached
    ok = {r.params["batch_size"] for r in records if r.metric == "decode_tok_s" and r.status == "ok"}
    assert ok == {1, 3}  # before and after the failing case
    assert 'class="status-oom">oom<' in (tmp_path / "oom" / "report.html").read_text()


@pytest.mark.slow
def test_a_killed_run_keeps_its_records_and_resumes_every_case_exactly_once(tmp_path):
    select = ["suites/test_load.py", "suites/test_infer.py", "-k", f"test_load or {EACH_BATCH}"]
    cmd = [sys.executable, "-m", "pytest", *select, "-q", "--report-dir", str(tmp_path), "--run-id", "killed", *SUITE_ARGS]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    results = tmp_path / "killed" / "results.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill it once the first inference case has finished
        if results.is_file() and '"decode_tok_s"' in results.read_text():
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with open(results, "a") as fh:  # what a writer killed mid-line leaves behind
        fh.write('{"run_id": "killed", "test_id": "torn')
    before = read_results(tmp_path / "killed")
    assert before and RunManifest.read(tmp_path / "killed").status == "incomplete"

    resumed = run_pytest(*select, "-q", "--resume", str(tmp_path / "killed"), "--report-dir", str(tmp_path), *SUITE_ARGS)
    assert resumed.returncode == 0, resumed.stdout[-2000:]
    assert "deselected" in resumed.stdout  # the finished cases did not run again
    lines = (tmp_path / "killed" / "results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is valid JSON
    keys = [(r["test_id"], r["metric"]) for r in records]
    assert len(keys) == len(set(keys)), "a case was recorded twice"
    cases = {r["test_id"] for r in records}
    assert len(cases) == 5  # load cold, load warm, and one case of each batch size
    assert all(any(r["test_id"] == c and r["metric"] == "peak_rss_gb" for r in records) for c in cases)
    manifest = RunManifest.read(tmp_path / "killed")
    assert manifest.status == "complete"
    # the killed part's wall time (to its last record) and the resumed part's both count
    killed_part = max(r.time for r in before) - manifest.started
    cases_s = sum(r["value"] for r in records if r["metric"] == "case_s")
    assert manifest.timings["run_wall_s"] > max(killed_part, cases_s)


@pytest.mark.slow
def test_a_case_cut_short_by_sigterm_runs_again_when_resumed(tmp_path):
    """A timeout's SIGTERM inside a case: the peaks its tracker saw must not mark it finished (on an
    H100 a 20B training case cut off this way came back from --resume with memory and no timing)."""
    select = ["suites/test_infer.py", "-k", "bs1-low"]
    log = tmp_path / "out.txt"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pytest", *select, "-v", "--report-dir", str(tmp_path),
                                 "--run-id", "cut", *SUITE_ARGS], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "BENCH_TEST_SLOWDOWN": "200"})  # minutes per case
        deadline = time.time() + 300
        while time.time() < deadline and "test_generate[bs1-low]" not in log.read_text():
            time.sleep(0.05)
        time.sleep(10)  # past the model's setup, into the case's call (the slowed case lasts minutes)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    records = read_results(tmp_path / "cut")
    assert not [r for r in records if r.metric in ("peak_rss_gb", "decode_tok_s")], log.read_text()[-2000:]

    resumed = run_pytest(*select, "-q", "--resume", str(tmp_path / "cut"), "--report-dir", str(tmp_path), *SUITE_ARGS)
    assert resumed.returncode == 0, resumed.stdout[-2000:]
    metrics = {r.metric for r in read_results(tmp_path / "cut") if r.status == "ok"}
    assert {"decode_tok_s", "peak_rss_gb"} <= metrics


@pytest.mark.slow
def test_a_hung_case_times_out_with_its_own_status(tmp_path):
    # 64 tokens stretched 200 times take minutes; the limit leaves the model's setup enough time
    result = run_pytest("suites/test_infer.py", "-q", "-k", "bs1-high", "--timeout", "30", "--report-dir", str(tmp_path),
                        "--run-id", "hung", *SUITE_ARGS, env_extra={"BENCH_TEST_SLOWDOWN": "200"})
    assert result.returncode == 1
    [case] = [r for r in read_results(tmp_path / "hung") if r.metric == "case"]
    assert case.status == "timeout" and "Timeout" in case.error
    assert case.params == {"batch_size": 1, "effort": "high"}


@pytest.mark.slow
def test_secrets_in_the_environment_reach_no_manifest_report_or_log(tmp_path):
    secrets = {"HF_TOKEN": "hf_SeCrEtToKeNvAlUe0123456789", "WANDB_API_KEY": "wandb-secret-0123456789",
               "MY_SERVICE_SECRET": "plain-secret-value-42"}
    result = run_pytest("suites/test_load.py", "-q", "--report-dir", str(tmp_path), "--run-id", "env", *SUITE_ARGS,
                        env_extra=secrets)
    assert result.returncode == 0, result.stdout[-2000:]
    text = result.stdout + result.stderr + "".join(p.read_text() for p in (tmp_path / "env").iterdir())
    for value in secrets.values():
        assert value not in text


# ---- HF cache health on fabricated cache trees ------------------------------------------------

def fake_repo(root: Path, repo: str, files=("config.json", "model.safetensors"), *, broken=None, incomplete=False,
              refs=True) -> Path:
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    blobs, snap = repo_dir / "blobs", repo_dir / "snapshots" / "abc123"
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    for i, name in enumerate(files):
        blob = blobs / f"blob{i}"
        blob.write_text("{}" if name.endswith(".json") else "weights")
        (snap / name).symlink_to(os.path.relpath(blob, snap))
        if name == broken:
            blob.unlink()  # the "moved by hand" failure: the symlink now points nowhere
    if incomplete:
        (blobs / "blob9.incomplete").write_text("partial")
    if refs:
        (repo_dir / "refs").mkdir()
        (repo_dir / "refs" / "main").write_text("abc123")
    return repo_dir


@pytest.mark.parametrize("setup, level, words", [
    ({}, "ok", "complete snapshot"),
    ({"broken": "model.safetensors"}, "error", "broken symlink"),
    ({"incomplete": True}, "error", "incomplete download"),
    ({"files": ("config.json",)}, "error", "lacks weights"),
    ({"refs": False}, "warn", "no refs/main"),
])
def test_doctor_reads_fabricated_caches(tmp_path, setup, level, words):
    fake_repo(tmp_path, "org/model", **setup)
    findings = check_hub_cache("org/model", tmp_path)
    assert any(f.level == level and words in f.message for f in findings), findings


def test_doctor_says_a_model_not_in_the_cache_would_download(tmp_path):
    [finding] = check_hub_cache("org/absent", tmp_path)
    assert finding.level == "error" and "would download" in finding.message


def test_doctor_warns_about_unquantized_local_paths(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt_oss"}))
    (tmp_path / "model.safetensors").write_text("w")
    [finding] = check_local_path(tmp_path)
    assert finding.level == "warn" and "re-quantizes on every load" in finding.message
    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "bitsandbytes"}}))
    assert check_local_path(tmp_path)[0].level == "ok"


def test_a_run_is_refused_at_start_with_the_cache_problem_instead_of_downloading(tmp_path):
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    fake_repo(tmp_path / "hub", "org/model", broken="model.safetensors")
    for model, problem in (("org/model", "broken symlink"), ("org/absent", "is not in the HF cache")):
        result = run_pytest("suites/test_load.py", "-q", "--model", model, "--report-dir", str(tmp_path / "r"),
                            *SUITE_ARGS, env_extra=env)
        assert result.returncode == 4, result.stdout[-2000:]
        [line] = [x for x in result.stderr.splitlines() if x.startswith("ERROR:")]
        assert line.startswith(f"ERROR: --model {model}: ") and problem in line
        assert not list((tmp_path / "r").glob("*"))  # refused before any run directory


@pytest.mark.slow
def test_isolated_cases_survive_a_crashing_neighbour(tmp_path):
    result = run_pytest("suites/test_infer.py", "-q", "-k", EACH_BATCH, "--isolate", "--report-dir", str(tmp_path),
                        "--run-id", "iso", *SUITE_ARGS, env_extra={"BENCH_TEST_CRASH_AT_BATCH": "2"})
    assert result.returncode == 1, result.stdout[-3000:]
    assert "2 passed" in result.stdout and "1 failed" in result.stdout
    records = read_results(tmp_path / "iso")
    [death] = [r for r in records if r.metric == "case"]
    assert death.params == {"batch_size": 2, "effort": "medium"} and "SIGSEGV" in death.error
    assert {r.params["batch_size"] for r in records if r.metric == "decode_tok_s"} == {1, 3}
    assert RunManifest.read(tmp_path / "iso").status == "complete"
    assert "gpt-oss bench" in result.stdout and "decode_tok_s" in result.stdout  # the parent's summary has them


@pytest.mark.slow
def test_a_load_group_shares_one_process_and_the_cost_is_recorded(tmp_path):
    """--isolate group: the cold and warm loads share one child (the cold load is its first), the
    training case gets its own; the manifest says what isolation cost."""
    result = run_pytest("suites/test_load.py", "suites/test_adapter.py", "-q", "--isolate", "group",
                        "--report-dir", str(tmp_path), "--run-id", "grp", *SUITE_ARGS)
    assert result.returncode == 0, result.stdout[-3000:]
    manifest = RunManifest.read(tmp_path / "grp")
    assert manifest.timings["isolation_processes"] == 2
    assert any(note.startswith("isolation: each load group ran in a fresh process") for note in manifest.notes)
    # the first child times the cold load: it starts fresh and imports what a user's script does, and
    # the run waited for that import, filed as the engine's (the training child's, forked, is not the run's)
    assert manifest.timings["engine_import_s"] > 0 and manifest.timings["isolation_fresh_processes"] == 1
    assert manifest.timings["import_hf_s"] <= manifest.timings["engine_import_s"]
    records = read_results(tmp_path / "grp")
    cold = [r for r in records if r.metric == "load_s" and r.params == {"cache": "cold"}]
    assert cold and cold[0].status == "ok"  # not skipped: it was the child's first load
    assert any(r.metric == "adapter_roundtrip_equal" for r in records)
    assert list((tmp_path / "grp").glob("isolation-logs-*/group-0.log"))  # the children's logs are kept
