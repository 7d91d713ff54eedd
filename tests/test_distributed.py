"""Several devices, engines and machines: the worker plan, shards, turns, concurrent appends, and
the suites run through per-device workers, by hand-made shards and through Ray, each giving one
run with every case exactly once."""

import dataclasses
import json
import multiprocessing
import subprocess
import sys
import time

import pytest

from bench.analysis.compare import compare
from bench.errors import BenchError
from bench.records.results import ResultsWriter, RunManifest, read_results
from bench.harness.shard import assign, parse_shard
from bench.harness.workers import Plan, Slot, finish_turn, plan, strip_group, wait_for_turn, write_part

from conftest import REPO, make_record
from test_plugin import run_pytest

SELECTION = ["suites/test_load.py", "suites/test_infer.py", "-k", "load or bs1 or bs2"]
# These tests are about where cases run, not how fast: a baseline without timing checks keeps a
# loaded 2-core machine (two shards at once) from failing them on a slow cold load.
STRUCTURE_ONLY = REPO / "tests" / "data" / "structure-only.toml"


# ---- the plan ---------------------------------------------------------------------------------
def test_one_device_one_engine_stays_in_process():
    assert plan([0], ["unsloth"]) is None and plan(None, ["hf"]) is None


def test_gpus_spread_cases_and_workers_per_gpu_round_robin():
    p = plan([0, 1], ["unsloth"], workers_per_gpu=2)
    assert p.dist == "loadgroup" and [s.gpu for s in p.slots] == [0, 1, 0, 1] and p.shares_device
    assert not plan([0, 1], ["unsloth"]).shares_device


def test_each_gpu_runs_every_case_on_every_gpu():
    p = plan([0, 1, 2], ["hf"], each_gpu=True)
    assert p.dist == "each" and [s.gpu for s in p.slots] == [0, 1, 2]


def test_engines_take_turns_on_one_device():
    p = plan([0], ["hf", "unsloth"])
    assert p == Plan([Slot(0, "hf", 0), Slot(0, "unsloth", 1)], "each") and not p.shares_device


def test_an_xdist_worker_count_spreads_over_the_gpus():
    assert [s.gpu for s in plan([0, 1], ["hf"], workers=3).slots] == [0, 1, 0]


def test_a_crashed_workers_replacement_takes_its_slot(tmp_path):
    """xdist replaces a crashed worker under a new number (gw2 of two): it must get the dead one's
    GPU, not an index error that ends the whole session (seen in CI)."""
    from types import SimpleNamespace

    from bench.harness.workers import Controller

    session = SimpleNamespace(plan=Plan([Slot(0, "hf"), Slot(1, "hf")], "loadgroup"), planned_dir=tmp_path,
                              gpu_indices=[0, 1])
    controller = Controller(session)
    nodes = {w: SimpleNamespace(workerinput={"workerid": w}) for w in ("gw0", "gw1", "gw2")}
    controller.pytest_configure_node(nodes["gw0"])
    controller.pytest_configure_node(nodes["gw1"])
    controller.pytest_testnodedown(nodes["gw1"], error="killed")
    controller.pytest_configure_node(nodes["gw2"])
    assert nodes["gw2"].workerinput["bench_slot"]["gpu"] == 1


def test_workers_checking_one_report_dir_at_once_do_not_trip_each_other(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from bench.harness.inputs import writable_dir

    with ThreadPoolExecutor(8) as pool:
        assert len(set(pool.map(lambda _: writable_dir(tmp_path / "reports"), range(64)))) == 1
    assert list((tmp_path / "reports").iterdir()) == []


def test_a_users_dist_is_kept_where_it_keeps_a_load_group_on_one_worker():
    assert plan(None, ["hf"], workers=2, dist="loadfile").dist == "loadfile"  # `pytest tests/ -n 2 --dist loadfile`
    assert plan(None, ["hf"], workers=2, dist="load").dist == "loadgroup"  # would split a load group
    assert plan([0, 1], ["hf"], dist="no").dist == "loadgroup"


@pytest.mark.parametrize("kwargs, message", [
    (dict(gpus=[0, 1], backends=["hf", "unsloth"]), "compares engines on one device"),
    (dict(gpus=[0], backends=["hf"], each_gpu=True), "--each-gpu needs several GPUs"),
    (dict(gpus=[0, 1], backends=["hf"], each_gpu=True, workers_per_gpu=2), "drop --workers-per-gpu"),
])
def test_impossible_plans_say_what_to_change(kwargs, message):
    with pytest.raises(BenchError, match=message):
        plan(**kwargs)


# ---- shards and groups ------------------------------------------------------------------------
def test_shards_keep_groups_whole_and_cover_every_case_once():
    groups = ["load", "load", "t1", "t2", "t3", "infer", "infer", "infer", "adapter"]
    shard_of = assign(groups, 2)
    loads = [sum(1 for g in groups if shard_of[g] == k) for k in range(2)]
    assert sorted(loads) == [4, 5] and set(shard_of) == set(groups)
    assert assign(groups, 2) == shard_of  # deterministic: every process computes the same split


def test_shard_spec():
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "-1/2", "1/0", "1"):
        with pytest.raises(BenchError):
            parse_shard(bad)


def test_xdist_group_suffix_is_removed_from_record_ids():
    assert strip_group("suites/test_infer.py::test_generate[bs1-low]@suites/test_infer.py",
                       "suites/test_infer.py") == "suites/test_infer.py::test_generate[bs1-low]"
    assert strip_group("suites/test_train.py::test_train[r8-b2x2]", None) == "suites/test_train.py::test_train[r8-b2x2]"


# ---- turns ------------------------------------------------------------------------------------
def test_a_turn_waits_for_the_earlier_one_and_not_for_a_dead_worker(tmp_path):
    for worker, turn in (("gw0", 0), ("gw1", 1)):
        write_part(tmp_path, worker, {"turn": turn, "ready": True})
    finish_turn(tmp_path, 0)
    assert wait_for_turn(tmp_path, 1, workers=2) < 1.0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    write_part(tmp_path, "gw2", {"turn": 2, "ready": True})
    part = json.loads((tmp_path / "workers" / "gw1.json").read_text())
    (tmp_path / "workers" / "gw1.json").write_text(json.dumps({**part, "pid": int(dead.stdout)}))
    started = time.monotonic()
    wait_for_turn(tmp_path, 2, workers=3)  # turn 1 never finished, but its process is gone
    assert time.monotonic() - started < 5


# ---- one results file, several writers -------------------------------------------------------
def _append(path, worker, n):
    writer = ResultsWriter(path)
    for i in range(n):
        writer.write(make_record("decode_tok_s", float(i), samples=[1.0] * 400, run_id=worker, batch_size=i))
    writer.close()


def test_processes_appending_to_one_file_never_tear_a_record(tmp_path):
    path = tmp_path / "results.jsonl"
    procs = [multiprocessing.get_context("spawn").Process(target=_append, args=(path, f"w{k}", 200)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    records = read_results(path)
    assert len(records) == 800 and {r.run_id for r in records} == {"w0", "w1", "w2", "w3"}


# ---- comparing runs that hold several engines ---------------------------------------------------
def test_a_run_with_two_engines_is_compared_like_with_like():
    def rec(backend, value):
        return dataclasses.replace(make_record("decode_tok_s", value, samples=[value * 0.99, value, value * 1.01],
                                               batch_size=1), backend=backend)

    result = compare([rec("hf", 10.0), rec("unsloth", 20.0)], [rec("hf", 10.0), rec("unsloth", 10.0)])
    assert len(result.changes) == 2
    [regression] = result.regressions
    assert (regression.base, regression.new) == pytest.approx((20.0, 10.0), rel=1e-3)  # unsloth against unsloth, not hf
    # two single-engine runs are compared case by case across engines: that is how engines are compared
    assert len(compare([rec("hf", 10.0)], [rec("unsloth", 20.0)]).improvements) == 1


# ---- the suites, spread three ways (CPU) -----------------------------------------------------
def _cases(run_dir):
    records = read_results(run_dir)
    keys = [(r.test_id, r.metric) for r in records]
    assert len(keys) == len(set(keys)), "a measurement was recorded twice"
    return {r.test_id for r in records}, set(keys)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    result = run_pytest(*SELECTION, "--baseline", str(STRUCTURE_ONLY), "-q", "--gpu", "cpu", "--benchmark-disable", "--report-dir", str(out),
                        "--run-id", "single")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return _cases(out / "single")


@pytest.mark.slow
def test_two_workers_on_one_device_give_one_run(one_process, tmp_path):
    result = run_pytest(*SELECTION, "--baseline", str(STRUCTURE_ONLY), "-q", "--gpu", "cpu", "--workers-per-gpu", "2", "--benchmark-disable",
                        "--report-dir", str(tmp_path), "--run-id", "workers")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    run_dir = tmp_path / "workers"
    assert _cases(run_dir) == one_process
    manifest = RunManifest.read(run_dir)
    assert manifest.status == "complete" and [w["worker"] for w in manifest.workers] == ["gw0", "gw1"]
    assert any("shared a device" in note for note in manifest.notes)
    assert (run_dir / "report.html").is_file() and "gpt-oss bench" in result.stdout
    assert "@suites/" not in (run_dir / "results.jsonl").read_text()  # plain test ids in the records


@pytest.mark.slow
def test_workers_say_what_the_profile_left_out(tmp_path):
    """Each worker collects the cases and the controller none: the note comes from the workers."""
    result = run_pytest("suites/", "-k", "test_load", "--baseline", str(STRUCTURE_ONLY), "-q", "--gpu", "cpu",
                        "--workers-per-gpu", "2", "--benchmark-disable", "--report-dir", str(tmp_path), "--run-id", "w")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    notes = RunManifest.read(tmp_path / "w").notes
    assert [n for n in notes if n.startswith("profile quick leaves out")] == [
        "profile quick leaves out concurrency (2 cases) and serve (3 cases): --profile full runs them, "
        "as does naming the file (pytest suites/test_concurrency.py suites/test_serve.py)"]
    assert "not run: profile quick leaves out" in result.stdout


@pytest.mark.slow
def test_bench_merge_of_two_shards_equals_one_run(one_process, tmp_path):
    for index in (0, 1):
        result = run_pytest(*SELECTION, "--baseline", str(STRUCTURE_ONLY), "-q", "--gpu", "cpu", "--shard", f"{index}/2", "--benchmark-disable",
                            "--report-dir", str(tmp_path), "--run-id", f"shard-{index}")
        assert result.returncode == 0, result.stdout[-3000:]
    shards = [_cases(tmp_path / f"shard-{i}")[0] for i in (0, 1)]
    assert shards[0] and shards[1] and not shards[0] & shards[1]
    merged = subprocess.run([sys.executable, "-m", "bench.commands.cli", "merge", str(tmp_path / "shard-0"),
                             str(tmp_path / "shard-1"), "-o", str(tmp_path / "merged")],
                            capture_output=True, text=True, cwd=REPO)
    assert merged.returncode == 0, merged.stderr
    assert _cases(tmp_path / "merged") == one_process
