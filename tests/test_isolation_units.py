"""The pure parts of isolation, adaptive rounds and the why-figures: no GPU, no child processes."""

from __future__ import annotations

import math

import pytest

from bench.errors import BenchError
from bench.harness.isolate import plan_groups, resolve_mode
from bench.telemetry.kernels import _gpu_round, _union_s, profile_round
from bench.telemetry.load_phases import (BUILD, COMPILE, COPY, IMPORT, OTHER, PHASES, QUANTIZE, READ, claim,
                                         phase_of, profile_load)
from bench.telemetry.rounds import Precision, RoundThread, half_width, run_rounds


def test_auto_isolates_load_groups_on_a_gpu_only_and_never_in_a_child():
    assert resolve_mode("auto", "cuda:0", child=False) == "group"
    assert resolve_mode("auto", "cpu", child=False) == "off"
    assert resolve_mode("case", "cpu", child=False) == "case"
    assert resolve_mode("group", "cuda:0", child=True) == "off"
    with pytest.raises(BenchError, match="--isolate sometimes: choose one of"):
        resolve_mode("sometimes", "cpu", child=False)


def test_groups_keep_consecutive_cases_of_one_group_and_split_ungrouped_ones():
    ids = ["load[cold]", "load[warm]", "train[r8]", "train[r16]", "infer[bs1]", "infer[bs2]"]
    groups = ["load", "load", None, None, "infer", "infer"]
    assert plan_groups(ids, groups, "group") == [["load[cold]", "load[warm]"], ["train[r8]"], ["train[r16]"],
                                                 ["infer[bs1]", "infer[bs2]"]]
    assert plan_groups(ids, groups, "case") == [[i] for i in ids]


def test_kernel_intervals_are_merged_before_they_are_summed():
    assert _union_s([(0, 10), (5, 15), (20, 30)]) == pytest.approx(25e-6)
    assert _union_s([(0, 100), (10, 20)]) == pytest.approx(100e-6)
    assert _union_s([]) == 0.0


def test_a_cpu_round_profile_names_its_top_operators_and_no_gpu_figures():
    import torch

    a = torch.randn(64, 64)
    prof = profile_round(lambda: [a @ a for _ in range(20)], "cpu")
    assert prof.busy_fraction is None and prof.launches is None and prof.what == "operators"
    assert any("mm" in row["name"] for row in prof.top)
    assert prof.summary(per=20, unit="token")["launches_per_token"] is None


class _Event:
    """A stand-in for kineto's flat event (name, device, start and end in ns)."""

    def __init__(self, name: str, device: str, start_us: float, end_us: float) -> None:
        self._name, self._device, self._start, self._end = name, device, int(start_us * 1e3), int(end_us * 1e3)

    def name(self): return self._name
    def device_type(self): return self._device
    def start_ns(self): return self._start
    def end_ns(self): return self._end


def test_a_gpu_round_counts_kernels_on_the_gpu_and_launch_calls_on_the_host():
    events = [_Event("cudaLaunchKernel", "cpu", 0, 2), _Event("gemm", "gpu", 5, 25),
              _Event("cudaLaunchKernel", "cpu", 3, 4), _Event("gemm", "gpu", 20, 40),
              _Event("aten::mm", "cpu", 0, 10), _Event("cudaGraphLaunch", "cpu", 50, 51),
              _Event("dequant", "gpu", 60, 70)]
    prof = _gpu_round(100e-6, events, "gpu")
    assert (prof.kernels, prof.launches) == (3, 3)
    assert prof.busy_s == pytest.approx(45e-6)  # 5-40 and 60-70: overlapping kernels count once
    assert prof.busy_fraction == pytest.approx(0.45)
    assert [(row["name"], row["calls"], row["ms"]) for row in prof.top] == [("gemm", 2, 0.04), ("dequant", 1, 0.01)]
    assert prof.summary(per=3, unit="token")["launches_per_token"] == 1


def test_load_phases_follow_the_innermost_frame_a_rule_claims():
    assert claim("/x/safetensors/torch.py", "load_file") == READ
    assert claim("/x/transformers/core_model_loading.py", "_materialize_copy", "    tensor = tensor[...]\n") == READ
    assert claim("/x/transformers/core_model_loading.py", "_materialize_copy",
                 "        tensor = tensor.to(device=device, dtype=dtype)\n") == COPY
    assert claim("/x/bitsandbytes/functional.py", "quantize_4bit") == QUANTIZE
    assert claim("/x/torch/_dynamo/eval_frame.py", "__call__") == COMPILE
    assert claim("/x/transformers/models/gpt_oss/modeling_gpt_oss.py", "__init__") == BUILD
    assert claim("/x/threading.py", "__init__") is None  # not every __init__ builds the model
    assert claim("/x/transformers/modeling_utils.py", "_init_weights") == BUILD
    assert claim("/x/transformers/modeling_utils.py", "from_pretrained") == OTHER
    assert claim("/x/unsloth/models/loader.py", "from_pretrained") == IMPORT


def test_a_sampled_stack_goes_to_its_innermost_claimed_frame():
    import sys

    def quantize_4bit():  # a function by that name is not claimed: only bitsandbytes' files are
        return sys._getframe()

    here = sys._getframe()
    assert phase_of(quantize_4bit(), here) == OTHER
    assert phase_of(quantize_4bit()) == IMPORT  # beyond the load: the program's own <module>
    assert phase_of(None) == OTHER


def test_a_profiled_load_sums_its_phases_to_its_own_time():
    def load():
        return sum(i * i for i in range(2_000_000))

    wall, phases, result = profile_load(load)
    assert result == sum(i * i for i in range(2_000_000))
    assert set(phases) == set(PHASES)
    assert abs(sum(phases.values()) - wall) <= 0.01 * wall + 1e-3


def test_waiting_for_loader_threads_counts_as_what_they_do():
    import concurrent.futures
    import types

    fake = types.ModuleType("fake_loader")
    fake.__file__ = "/x/transformers/core_model_loading.py"
    exec(compile("import time\ndef _materialize_copy(seconds):\n    time.sleep(seconds)\n    return seconds\n",
                 fake.__file__, "exec"), fake.__dict__)

    def load():
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            return [f.result() for f in [pool.submit(fake._materialize_copy, 0.2) for _ in range(2)]]

    wall, phases, _ = profile_load(load)
    assert phases[READ] > 0.7 * wall


def test_interval_width_of_the_geometric_mean():
    assert half_width([1.0]) == math.inf
    assert half_width([2.0, 2.0, 2.0]) == 0.0
    assert 0.05 < half_width([1.0, 1.2, 0.9, 1.1]) < 0.3


def test_adaptive_rounds_stop_at_the_minimum_when_stable_and_go_on_when_noisy():
    stable: list[float] = []
    n = run_rounds(None, lambda: stable.append(1.0), rounds=3, warmup_rounds=1,
                   until=Precision(lambda: stable[1:], max_time_s=5.0))
    assert n == 3 and len(stable) == 4  # the warm-up ran and is not counted

    values = iter([1.0, 1.5, 0.7, 1.3, 0.8] * 100)
    noisy: list[float] = []
    n = run_rounds(None, lambda: noisy.append(next(values)), rounds=3,
                   until=Precision(lambda: noisy, max_time_s=5.0, max_rounds=12))
    assert n == 12  # still wider than +-2% after 12 rounds: stopped by the round cap

    n = run_rounds(None, lambda: noisy.append(next(values)), rounds=3,
                   until=Precision(lambda: noisy, max_time_s=0.0))
    assert n == 3  # no time left: only the minimum


def test_a_gpu_cases_rounds_share_one_thread_of_their_own_on_its_device_and_a_cpu_cases_stay_in_place(monkeypatch):
    import threading

    import torch

    pinned: list[tuple[str, torch.device]] = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: pinned.append((threading.current_thread().name, d)))
    here = threading.current_thread()
    with RoundThread("cpu") as on_round_thread:
        assert on_round_thread(threading.current_thread) is here
    with RoundThread("cuda:1") as on_round_thread:
        first, second = on_round_thread(threading.current_thread), on_round_thread(threading.current_thread)
        assert first is second and first is not here
        with pytest.raises(ZeroDivisionError):  # a round's failure reaches the test as itself
            on_round_thread(lambda: 1 / 0)
        assert on_round_thread(lambda: 7) == 7
    assert pinned == [(first.name, torch.device("cuda:1"))]
    assert not first.is_alive()


def test_auto_runs_the_tiny_model_on_transformers_even_where_unsloth_is_installed(monkeypatch):
    import bench.backends as backends

    monkeypatch.setattr(backends, "unsloth_available", lambda: True)
    assert backends.resolve_backend_name("auto", cuda=True, tiny=True) == "hf"
    assert backends.resolve_backend_name("auto", cuda=True, tiny=False) == "unsloth"
    assert backends.resolve_backend_name("auto", cuda=False, tiny=False) == "hf"


class _FakeProc:
    exitcode = 0

    def join(self, timeout=None):
        pass

    def kill(self):
        pass


@pytest.mark.parametrize("in_order, expected", [(True, [0, 1, 2]), (False, [0, 3])])
def test_children_start_ahead_in_the_planned_order_or_only_for_the_known_next_case(tmp_path, in_order, expected):
    from pathlib import Path

    from bench.harness.isolate import Child, Isolator

    iso = Isolator(tmp_path, None, [["a"], ["b"], ["c"], ["d"]], standby=True, in_order=in_order)
    spawned: list[int] = []

    def spawn(i):
        spawned.append(i)
        child = Child(iso.groups[i], _FakeProc(), tmp_path / "log", tmp_path / "rep", Path(tmp_path / f"go{i}"), 0.0)
        Path(f"{child.go}").with_suffix(".ready").touch()
        iso.children[i] = child
        return child

    iso._spawn = spawn
    iso._collect = lambda child, code: iso.results.update({n: None for n in child.nodeids})
    iso.result("a", following="d")
    assert spawned == expected


@pytest.mark.parametrize("running, in_order, following, expected", [
    (0, True, None, [1]),      # the generation group may import beside the load group; the one after it may not
    (1, True, None, []),       # nothing beside generation
    (2, True, None, [3]),
    (0, False, 1, [1]),        # an xdist worker: the known next case, also when it times generation
    (1, False, 2, []),
])
def test_no_child_waits_beside_a_group_timing_generation(tmp_path, running, in_order, following, expected):
    """A waiting child has its engine imported (with Unsloth, a CUDA context on the GPU): a
    host-bound decode timed beside it is not what a user's script sees alone."""
    from bench.harness.isolate import Isolator

    iso = Isolator(tmp_path, None, [["load"], ["infer"], ["train"], ["adapter"]], standby=True, in_order=in_order,
                   alone=frozenset({1}))
    assert iso._ahead([running], following) == expected
    assert "except beside generation, which ran with no other child" in iso.describe(10.0)


def test_a_childs_kept_log_has_no_secret_from_the_environment(tmp_path, monkeypatch):
    from bench.harness.isolate import Child, Isolator

    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnopqrstuvwxyz0123")
    iso = Isolator(tmp_path, None, [["suites/test_load.py::test_load[cold]"]])
    log = tmp_path / "group-0.log"
    log.write_text("loading with token hf_abcdefghijklmnopqrstuvwxyz0123\nboom\n")
    child = Child(iso.groups[0], _FakeProc(), log, tmp_path / "none.jsonl", tmp_path / "go", 0.0)
    iso._collect(child, -11)
    assert "hf_abcdefghijklmnopqrstuvwxyz0123" not in log.read_text()
    [died] = iso.results.values()
    assert died.outcome == "failed" and "SIGSEGV" in died.died and "***" in died.longrepr


def test_a_child_gets_what_its_cases_need_from_the_parent():
    """A worker's child is pinned to the worker's GPU yet must know every GPU of the run (the
    split placement trains on one and serves on the other); the serving options pass on too."""
    from bench.harness.isolate import pytest_command
    from bench.harness.option_table import BenchOptions

    worker = BenchOptions(gpu="1", run_gpus=(0, 1), endpoint="http://h:8000", slo="ttft=1s")
    cmd = pytest_command(["suites/test_concurrency.py::test_concurrency[split]"], worker)
    assert cmd[cmd.index("--gpu") + 1] == "1" and cmd[cmd.index("--bench-run-gpus") + 1] == "0,1"
    assert cmd[cmd.index("--endpoint") + 1] == "http://h:8000" and cmd[cmd.index("--slo") + 1] == "ttft=1s"
    assert "--bench-run-gpus" not in pytest_command(["x"], BenchOptions(gpu="0"))
    # the cross-check's harness repeats time a plain control in the process that generates: the child
    assert "--plain-control" in pytest_command(["x"], BenchOptions(gpu="0", plain_control=True))
    assert "--plain-control" not in pytest_command(["x"], BenchOptions(gpu="0"))


def test_the_slowdown_hook_stretches_by_its_fraction_and_not_at_all_when_off(monkeypatch):
    import time

    from bench.telemetry import failpoints

    monkeypatch.delenv(failpoints.SLOWDOWN_ENV, raising=False)
    started = time.perf_counter()
    failpoints.stretch(10.0)
    assert time.perf_counter() - started < 1.0
    monkeypatch.setenv(failpoints.SLOWDOWN_ENV, "0.5")
    started = time.perf_counter()
    failpoints.stretch(0.04)
    assert time.perf_counter() - started >= 0.02


def test_the_first_childs_own_engine_import_is_the_runs_and_later_ones_are_not(tmp_path):
    """Unsloth cannot be preloaded (it starts CUDA on import): the run waits for the first child's
    import (a one-off cost, not isolation's), while later children import ahead of their turn."""
    import json

    from bench.harness.isolate import Child, Isolator

    iso = Isolator(tmp_path, None, [["a"], ["b"]])
    for i, first in ((0, True), (1, False)):
        reports = tmp_path / f"r{i}.jsonl"
        reports.write_text(json.dumps({"timings": {"import_unsloth_s": 30.0}}) + "\n")
        child = Child(iso.groups[i], _FakeProc(), tmp_path / f"log{i}", reports, tmp_path / f"go{i}", 0.0, first=first)
        child.log.write_text("")
        if first:
            iso.first_wait_s = 32.0  # its start-up: pytest's start and the import
        iso.waited_s += 32.0 if first else 1.0
        iso._collect(child, 0)
    assert iso.engine_import_s == 30.0
    assert iso.waited_s == pytest.approx(2.0 + 1.0)  # the first child's pytest start, the second's wait
    assert iso.timings["import_unsloth_s"] == 30.0


def _ready_children(monkeypatch, on_start=lambda context: None, on_join=lambda: None):
    """`start_python` replaced for the isolator: each child is ready at once (imports done) and ends
    when joined; `on_start(context)` and `on_join()` see each start and each join."""
    from pathlib import Path

    import bench.harness.isolate as isolate

    class Proc:
        exitcode = None

        def join(self, timeout=None):
            on_join()
            self.exitcode = 0

        def kill(self):
            pass

    def start(context, target, args, log):
        on_start(context)
        cmd = args[0]
        Path(cmd[cmd.index("--bench-standby") + 1]).with_suffix(".ready").touch()
        return Proc()

    monkeypatch.setattr(isolate, "start_python", start)


def test_load_and_inference_children_start_fresh_while_the_server_imports_and_training_waits_for_it(
        tmp_path, monkeypatch):
    """The first groups start at once in fresh interpreters; a training child forked from a fork
    server still importing would make the parent wait, so it starts once the server serves."""
    import multiprocessing

    import bench.harness.isolate as isolate
    from bench.harness.option_table import BenchOptions

    serving = {"now": False}
    monkeypatch.setattr(isolate, "server_ready", lambda: serving["now"])
    started: list[str] = []
    _ready_children(monkeypatch, on_start=lambda context: started.append(context.get_start_method()),
                    on_join=lambda: serving.update(now=True))  # the server finished while the group ran
    iso = isolate.Isolator(tmp_path, BenchOptions(), [["load"], ["infer"], ["train"], ["adapter"]], standby=True,
                           light=frozenset({0, 1}), context=multiprocessing.get_context("forkserver"))
    iso._collect = lambda child, code: iso.results.update({n: None for n in child.nodeids})
    iso.result("load")
    assert started == ["spawn", "spawn", "forkserver"]
    assert iso.fresh_processes == 2 and "2 started fresh" in iso.describe(10.0)


def test_a_group_timing_a_cold_load_or_generation_starts_fresh_even_when_the_fork_server_serves(tmp_path, monkeypatch):
    """The fork server imports more than a user's script does before its first load: a cold load's
    child never comes from it, whatever the server's state; the others still do."""
    import multiprocessing

    import bench.harness.isolate as isolate
    from bench.backends import preloads_for
    from bench.harness.option_table import BenchOptions

    monkeypatch.setattr(isolate, "server_ready", lambda: True)
    started: list[str] = []
    _ready_children(monkeypatch, on_start=lambda context: started.append(context.get_start_method()))
    iso = isolate.Isolator(tmp_path, BenchOptions(), [["load"], ["train"]], fresh=frozenset({0}),
                           context=multiprocessing.get_context("forkserver"))
    iso._collect = lambda child, code: iso.results.update({n: None for n in child.nodeids})
    iso.result("load")
    iso.result("train")
    assert started == ["spawn", "forkserver"] and iso.fresh_processes == 1
    # transformers' fork server preloads its trainer (and with it the model stack); Unsloth's only torch,
    # but frozen, where a user's script has torch's objects in every full collection of its load
    assert preloads_for("hf") and preloads_for("unsloth")
    # generation is host-bound: it decoded slower in a child of the fork server than in a fresh interpreter
    from bench.harness.plugin import _starts_fresh

    assert _starts_fresh("unsloth", {"load"}) and _starts_fresh("hf", {"infer"})
    assert not _starts_fresh("unsloth", {"train"}) and not _starts_fresh("hf", {"adapter"})


def _imports_in_a_fresh_interpreter(code: str) -> list[str]:
    """The last line `code` printed, run in a fresh interpreter with the tiny model built first (by
    another process, as the harness's parent builds it for its children)."""
    import ast
    import subprocess
    import sys

    build = "from bench.models import tiny; tiny.ensure_built()"
    for script in (build, code):
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


def test_a_process_timing_a_cold_load_imports_only_what_a_users_script_does_and_the_first_load_the_rest():
    """A cold load pays for the model stack the engine imports on first use, as a user's first load
    does; the warm load after it imports nothing."""
    first, warm = _imports_in_a_fresh_interpreter("""
import sys
from bench.backends import get_backend, import_libraries
from bench.models import resolve_model
import_libraries("hf", {"load", "infer"})
assert "transformers.models.gpt_oss.modeling_gpt_oss" not in sys.modules, "the model stack imported ahead"
assert "peft" not in sys.modules and "trl" not in sys.modules, "training libraries imported"
backend, source = get_backend("hf", "cpu"), resolve_model("tiny-gpt-oss")
before = set(sys.modules)
backend.load(source)
first = sorted(m for m in set(sys.modules) - before if m.startswith("transformers."))
before = set(sys.modules)
backend.load(source)
print([first, sorted(m for m in set(sys.modules) - before if m.startswith(("transformers", "torch")))])
""")
    assert "transformers.models.gpt_oss.modeling_gpt_oss" in first
    assert warm == []


def test_an_inference_process_imports_the_model_stack_ahead_and_no_training_library():
    """Inference cases time no load: their process imports what loading and generating need before
    the first case, and nothing of training."""
    loaded = _imports_in_a_fresh_interpreter("""
import sys
from bench.backends import get_backend, import_libraries
from bench.models import resolve_model
import_libraries("hf", {"infer"})
assert "peft" not in sys.modules and "trl" not in sys.modules, "training libraries imported"
before = set(sys.modules)
get_backend("hf", "cpu").load(resolve_model("tiny-gpt-oss"))
print(sorted(m for m in set(sys.modules) - before if m.startswith(("transformers", "torch"))))
""")
    assert loaded == []


def test_the_plugin_every_measuring_process_loads_imports_no_reporting_library():
    """Tables, charts and pages are made by the parent after the cases: a child that imported pandas
    (and pyarrow with it) paid 0.8 s on the 2-core CPU before its first case, and times its cases in
    a heap of some 350 more modules than it needs."""
    loaded = _imports_in_a_fresh_interpreter("""
import sys
import bench.harness.plugin
print([name for name in ("pandas", "pyarrow", "matplotlib", "jinja2") if name in sys.modules])
""")
    assert loaded == []


def test_a_childs_wait_for_the_fork_servers_import_is_the_engines_not_isolations(tmp_path, monkeypatch):
    """An xdist worker's first case may need the whole engine while the server still imports it
    (the run did not wait for it up front): that wait is a one-off import, not isolation's cost."""
    import multiprocessing
    import time

    import bench.harness.isolate as isolate
    from bench.harness.option_table import BenchOptions

    monkeypatch.setattr(isolate, "server_ready", lambda: False)
    # the fork server finishing its import before it forks
    _ready_children(monkeypatch, on_start=lambda context: time.sleep(0.3))
    iso = isolate.Isolator(tmp_path, BenchOptions(), [["train"]], context=multiprocessing.get_context("forkserver"))
    iso._collect = lambda child, code: iso.results.update({n: None for n in child.nodeids})
    iso.result("train")
    assert iso.engine_import_s >= 0.3 and iso.waited_s < 0.3


def test_the_gpus_ceilings_measured_meanwhile_are_settled_before_the_first_child_goes(tmp_path, monkeypatch):
    """Measured while the first child imports; that child is told to go only once the measurement
    is done (the two would share the GPU) and in the manifest."""
    import multiprocessing
    import threading
    import time

    import bench.harness.isolate as isolate
    from bench.harness.option_table import BenchOptions

    events: list[str] = []
    done = threading.Event()

    class Session:
        def calibrate(self, say=None):
            say("measuring")  # from the measuring thread: said by the main one when settled
            time.sleep(0.3)
            events.append("measured")
            done.set()
            return {"matmul_tflops": 1.0}

    from bench.harness.session import BenchSession
    from bench.records.results import RunManifest

    session = Session()
    session.manifest = RunManifest(run_id="r", started=0.0, command=[], profile="quick", model="m", backend="hf",
                                   device="cuda:0", status="running")
    session.run_dir, session.say, session._calibrating = tmp_path, lambda line: events.append(f"said {line}"), None
    session.calibrate_meanwhile = BenchSession.calibrate_meanwhile.__get__(session)
    session.settle_calibration = BenchSession.settle_calibration.__get__(session)
    _ready_children(monkeypatch)
    session.calibrate_meanwhile()
    iso = isolate.Isolator(tmp_path, BenchOptions(), [["load"]], context=multiprocessing.get_context("forkserver"),
                           before_first_go=session.settle_calibration)
    real_tell = isolate.tell_go

    def tell(go, note):
        events.append("go" if done.is_set() else "go before the measurement ended")
        return real_tell(go, note)

    monkeypatch.setattr(isolate, "tell_go", tell)
    iso._collect = lambda child, code: iso.results.update({n: None for n in child.nodeids})
    iso.result("load")
    assert events == ["measured", "said measuring", "go"]
    assert RunManifest.read(tmp_path).calibration == {"matmul_tflops": 1.0}


def _timed_children(monkeypatch, seconds: dict[str, float], seen: list):
    """`start_python` replaced: each child is ready at once, records the go note it was given and
    ends `seconds[its first case]` after its go."""
    import time
    from pathlib import Path

    import bench.harness.isolate as isolate

    class Proc:
        def __init__(self, case, go):
            self.case, self.go, self.ends = case, go, None

        @property
        def exitcode(self):
            if self.ends is None and self.go.exists():
                self.ends = time.perf_counter() + seconds[self.case]
                seen.append((self.case, self.go.read_text(), time.perf_counter()))
            return 0 if self.ends is not None and time.perf_counter() >= self.ends else None

        def join(self, timeout=None):
            time.sleep(timeout or 0.01)

        def kill(self):
            pass

    def start(context, target, args, log):
        cmd = args[0]
        go = Path(cmd[cmd.index("--bench-standby") + 1])
        go.with_suffix(".ready").touch()
        return Proc(cmd[0], go)

    monkeypatch.setattr(isolate, "start_python", start)


@pytest.mark.parametrize("room", [True, False])
def test_correctness_checks_run_two_at_a_time_where_the_gpu_has_room_and_say_so(tmp_path, monkeypatch, room):
    """The resume and adapter checks time nothing: side by side, each in its own process, they cost
    the longer of the two; each child is told, so that it leaves out the device-wide figures."""
    import multiprocessing

    import bench.harness.isolate as isolate
    from bench.harness.option_table import BenchOptions

    seen: list = []
    _timed_children(monkeypatch, {"train": 0.05, "resume": 0.3, "adapter": 0.4}, seen)
    asked: list[int] = []
    iso = isolate.Isolator(tmp_path, BenchOptions(), [["train"], ["resume"], ["adapter"]], standby=True,
                           context=multiprocessing.get_context("spawn"), correctness=frozenset({1, 2}),
                           room=lambda n: asked.append(n) or room)
    iso._collect = lambda child, code: iso.results.update({n: None for n in child.nodeids})
    for case in ("train", "resume", "adapter"):
        iso.result(case)
    notes = {case: note for case, note, _ in seen}
    assert asked == [2] and notes["train"] == ""
    went = {case: at for case, _, at in seen}
    if room:
        assert notes["resume"] == notes["adapter"] == isolate.BESIDE_NOTE
        assert abs(went["adapter"] - went["resume"]) < 0.1  # told at once
        assert iso.beside_checks == 2 and iso.beside_s == pytest.approx(0.3, abs=0.1)
        assert "2 correctness checks ran two at a time" in iso.describe(1.0)
        assert iso.cost()["isolation_beside_s"] == pytest.approx(0.3, abs=0.1)
    else:
        assert notes["resume"] == notes["adapter"] == ""
        assert went["adapter"] - went["resume"] >= 0.3  # the second after the first ended
        assert iso.beside_checks == 0 and "two at a time" not in iso.describe(1.0)


def test_a_check_beside_another_leaves_out_the_gpus_and_hosts_figures_and_keeps_its_own(tmp_path):
    from bench.harness.case import Case
    from bench.telemetry.host_load import HostLoad
    from bench.telemetry.sampler import Usage

    written: list = []

    def record(metric, value, **fields):
        written.append((metric, value, fields.get("status", "ok"), fields.get("error")))
        return None, []

    case = Case("t::resume", "train", {}, "cuda:0", record, beside="ran beside another check")
    case.memory = type("M", (), {"allocated_peak_gb": 16.1, "reserved_peak_gb": 16.2, "allocated_start_gb": 0.0})()
    case.host = HostLoad(wall_s=30.0, others_cpu_s=45.0, steal_s=0.0, cores=16)
    case.usage = Usage(source="nvml", peak_memory_gb=34.0, process_peak_memory_gb=17.0, mean_util_pct=40.0)
    case.record_usage()
    by_metric = {metric: (value, status, error) for metric, value, status, error in written}
    assert by_metric["peak_vram_gb"][0] == 16.1 and by_metric["nvml_process_peak_gb"][0] == 17.0
    for shared in ("others_cpu_cores", "nvml_peak_used_gb", "gpu_util_pct"):
        assert by_metric[shared] == (None, "skipped", "ran beside another check")


def test_room_for_checks_side_by_side_comes_from_the_runs_training_peak_and_the_free_memory(monkeypatch):
    """Each check may take the largest training case's NVML peak, half again as margin; with no
    training case measured in this run there is no estimate, and checks run one at a time."""
    import dataclasses

    import bench.harness.session as session_module
    from bench.harness.session import BenchSession
    from bench.telemetry.devices import GpuInfo

    from conftest import make_record

    gpu = GpuInfo(0, "H100", "GPU-a", 80.0, "580")
    free = {"gb": 60.0}
    monkeypatch.setattr(session_module, "free_memory_gb", lambda index: free["gb"])
    on = lambda record, uuid="GPU-a": dataclasses.replace(record, gpu_uuid=uuid)  # noqa: E731
    session = type("S", (), {"gpu": gpu, "records": []})()
    room = BenchSession.room_beside.__get__(session)
    assert not room(2)  # no training case yet
    session.records = [on(make_record("nvml_process_peak_gb", 40.0, suite="infer")),
                       on(make_record("nvml_process_peak_gb", 30.0, suite="train"), "GPU-b"),
                       on(make_record("nvml_process_peak_gb", 16.0, suite="train"))]
    assert room(2)  # 2 x 16 GB x 1.5 = 48 GB of 60 free: inference and other GPUs' cases do not count
    free["gb"] = 40.0
    assert not room(2) and room(1)
    free["gb"] = None  # NVML cannot say
    assert not room(2)


def test_the_room_estimate_prefers_each_process_own_peak_over_the_devices(monkeypatch):
    """The device-wide peak includes waiting children's contexts: the estimate only where NVML
    cannot tell processes apart."""
    import dataclasses

    import bench.harness.session as session_module
    from bench.harness.session import BenchSession
    from bench.telemetry.devices import GpuInfo

    from conftest import make_record

    monkeypatch.setattr(session_module, "free_memory_gb", lambda index: 50.0)
    on = lambda record: dataclasses.replace(record, gpu_uuid="GPU-a")  # noqa: E731
    session = type("S", (), {"gpu": GpuInfo(0, "H100", "GPU-a", 80.0, "580"), "records": [
        on(make_record("nvml_process_peak_gb", 16.0, suite="train")),
        on(make_record("nvml_peak_used_gb", 18.0, suite="train"))]})()
    room = BenchSession.room_beside.__get__(session)
    assert room(2)  # 2 x 16 x 1.5 = 48 of 50; the device's 18 would need 54
    session.records = session.records[1:]
    assert not room(2)


def test_an_interrupt_stops_the_children_still_running(tmp_path, monkeypatch):
    """Ctrl-C while two checks run side by side: the session's `close` stops both, not only the
    standbys that had not started."""
    import multiprocessing

    import bench.harness.isolate as isolate
    from bench.harness.option_table import BenchOptions

    killed: list[str] = []
    _timed_children(monkeypatch, {"train": 0.05, "resume": 60.0, "adapter": 60.0}, [])
    iso = isolate.Isolator(tmp_path, BenchOptions(), [["train"], ["resume"], ["adapter"]], standby=True,
                           context=multiprocessing.get_context("spawn"), correctness=frozenset({1, 2}),
                           room=lambda n: True)
    iso._collect = lambda child, code: iso.results.update({n: None for n in child.nodeids})

    real_spawn = iso._spawn

    def spawn(i):
        child = real_spawn(i)
        case = child.nodeids[0]

        def join(timeout=None):
            if case == "train":
                return
            if case not in killed:  # Ctrl-C while waiting for it; once killed, it has ended
                raise KeyboardInterrupt

        child.proc.join, child.proc.kill = join, lambda: killed.append(case)
        return child

    iso._spawn = spawn
    iso.result("train")  # the two checks start ahead of their turn, while it runs
    with pytest.raises(KeyboardInterrupt):
        iso.result("resume")
    iso.close()
    assert sorted(killed) == ["adapter", "resume"]
