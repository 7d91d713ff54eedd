"""The pytest plugin: options, fixtures and hooks. Thin on purpose: it wires the modules together.

Registered through the `pytest11` entry point (and by the repository's conftest.py for a plain
checkout), so `pytest suites/` has every option below next to pytest's own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time

import pytest
from _pytest.junitxml import xml_key as junitxml_key  # the LogXML of --junitxml, for suite-level properties

from bench.backends import needs_only_load_and_generate, preloads_for, times_a_cold_load, times_generation
from bench.harness.case import Case, case_params
from bench.errors import BenchError
from bench.models.store import keep_compile_caches
from bench.records.profiles import axes
from bench.harness.option_table import add_options, bench_options
from bench.harness.child_reports import ChildReports
from bench.harness.session import BenchSession
from bench.harness.workload import one_thread
from bench.harness import collection
from bench.harness.shard import parse_shard
from bench.harness.selection import case_group, isolated, natural_order, suite_of
from bench.harness.workers import Controller, configure_xdist, finish_turn, strip_group, wait_for_turn

SESSION_KEY = pytest.StashKey[BenchSession]()
CASE_KEY = pytest.StashKey[Case]()
SETUP_S_KEY = pytest.StashKey[float]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser.getgroup("bench", "GPT-OSS fine-tuning and serving benchmarks"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "suite(name): the benchmark suite a test belongs to "
                            "(load, train, infer, adapter, concurrency, serve)")
    config.addinivalue_line("markers", "correctness: a case that checks correctness and times nothing: isolated on "
                            "a GPU with room, it may run beside another such case (bench.harness.isolate)")
    # With pytest-benchmark switched off (--benchmark-disable, xdist) the suites time rounds themselves.
    config.addinivalue_line("filterwarnings", "ignore:Benchmark fixture was not used at all")
    try:
        opts = bench_options(config.getoption, workers=config.getoption("numprocesses", None) or None,
                             dist=config.getoption("dist", None))
    except BenchError as exc:
        raise pytest.UsageError(str(exc)) from None
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        from bench.telemetry.processes import terminate_as_interrupt

        terminate_as_interrupt()
    if workerinput and "bench_slot" in workerinput:  # a worker of a multi-device session: its slot
        slot = workerinput["bench_slot"]
        opts = dataclasses.replace(opts, gpu="cpu" if slot["gpu"] is None else str(slot["gpu"]), backend=slot["backend"],
                                   worker_run=workerinput["bench_run_dir"], worker_id=workerinput["workerid"],
                                   turn=slot["turn"], workers_per_gpu=1, workers=None,
                                   run_gpus=tuple(workerinput["bench_gpus"] or ()))
        # xdist's worker reads --dist from its own argv, where the controller's choice is not
        config.option.loadgroup = workerinput["bench_dist"] == "loadgroup"
        if slot["gpu"] is None:  # CPU workers split the cores: oversubscribed threads would spin for minutes
            import torch

            torch.set_num_threads(max(1, (os.cpu_count() or 1) // workerinput["workercount"]))
    try:
        if config.getoption("--shard"):
            parse_shard(config.getoption("--shard"))
        session = BenchSession(opts, config.invocation_params.args)
        if opts.worker_run is None:  # with --endpoint, serving needs no local weights
            session.require_inputs(weights=opts.endpoint is None)
        keep_compile_caches()
    except BenchError as exc:
        raise pytest.UsageError(str(exc)) from None
    except ModuleNotFoundError as exc:  # an environment the harness was copied into rather than installed in
        raise pytest.UsageError(f"the module {exc.name!r} is missing: pip install -e . (in the checkout) installs "
                                "the harness with its dependencies") from None
    if session.device == "cpu" and session.source.kind == "tiny" and workerinput is None \
            and "OMP_NUM_THREADS" not in os.environ:
        one_thread()
    if session.plan is not None:
        if not config.pluginmanager.hasplugin("xdist"):
            raise pytest.UsageError("several GPUs or engines run as pytest-xdist workers: pip install pytest-xdist "
                                    "(and do not pass -p no:xdist)")
        configure_xdist(config, session.plan)
        config.pluginmanager.register(Controller(session), "bench-controller")
    if session.isolation != "off" and not config.option.collectonly:
        from bench.telemetry.processes import warm_up

        warm_up(session.processes())  # its imports (21 s on an H100 host) overlap this process's collection
    session.say = lambda line: _say(config, line)
    config.stash[SESSION_KEY] = session
    collection.register(config, session)
    if config.getoption("--bench-reports"):
        config.pluginmanager.register(ChildReports(config.getoption("--bench-reports"), session.timings), "bench-child")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    session = metafunc.config.stash.get(SESSION_KEY, None)
    if session is None:
        return
    taken: set[str] = set()
    for name, (values, ids) in axes(session.profile, session.servers).items():
        names = name.split(",")
        if all(n in metafunc.fixturenames for n in names) and not taken & set(names):
            taken.update(names)
            # one server per module-scoped fixture: all load points of a server run before the next starts
            metafunc.parametrize(name, values, ids=ids, scope="module" if name == "server" else None)


# after any plugin that reorders tests (pytest-randomly)
@pytest.hookimpl(trylast=True, specname="pytest_collection_modifyitems")
def pytest_collection_modifyitems_in_suite_order(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The cases run in the suites' order however another plugin shuffled them: the cold load first
    in its process, then the file's own order and the profile's parameter order."""
    if any(suite_of(item) for item in items):
        items.sort(key=natural_order)


def pytest_report_collectionfinish(config: pytest.Config) -> str | None:
    """Under "collected N items": which suites the profile left out, and how to run them."""
    bench = config.stash.get(SESSION_KEY, None)
    return bench.left_out if bench is not None else None


@pytest.hookimpl(tryfirst=True)  # an xdist worker makes the run directory before it reports its collection
def pytest_collection_finish(session: pytest.Session) -> None:
    bench = session.config.stash.get(SESSION_KEY, None)
    if bench is None or session.config.option.collectonly:
        return
    from bench.harness.isolate import standby_possible

    suite_items = [item for item in session.items if suite_of(item)]
    measured = [item for item in suite_items if isolated(item) and not item.get_closest_marker("skip")]
    standby = standby_possible(bench.device)
    if suite_items:
        if measured and bench.isolation != "off" and bench.plan is None:
            first = {suite_of(measured[0])}
            bench.first_child_fresh = _starts_fresh(bench.backend_name, first) or (
                standby and needs_only_load_and_generate(bench.backend_name, first))
        bench.start()
    go = session.config.getoption("--bench-standby")
    if go or (suite_items and bench.isolation == "off" and bench.plan is None):
        # the process that runs the cases imports its engine now, never inside a case's timing. The
        # suites import no engine library at collection: Unsloth, which must come before
        # transformers, comes first here.
        from bench.backends import import_libraries
        from bench.telemetry.memory import freeze_imports

        # A process timing a cold load freezes only the harness's own objects (pytest, this plugin),
        # which a user's script does not have: the engine's, as there, stay the collector's to walk.
        cold = times_a_cold_load(bench.collected_suites)
        if cold:
            freeze_imports()
        started = time.perf_counter()
        import_libraries(bench.backend_name, bench.collected_suites)
        spent = round(time.perf_counter() - started, 4)
        bench.timings[f"import_{bench.backend_name}_s"] = spent
        if not go:  # a child's import is not the run's to wait for: it ran ahead, or in the wait for it
            bench.add_engine_import(spent)
        if not cold:
            freeze_imports()
    if go:  # an isolated child: its engine imported, it waits until the group before it has exited
        from bench.harness.isolate import wait_for_go

        bench.beside = wait_for_go(go)
    elif suite_items and bench.isolation != "off":
        from bench.harness.isolate import Isolator, plan_groups

        nodeids = [strip_group(item.nodeid, case_group(item)) for item in measured]
        groups = plan_groups(nodeids, [case_group(item) for item in measured], bench.isolation)
        suite_by_case = {strip_group(item.nodeid, case_group(item)): suite_of(item) for item in measured}
        checks = {strip_group(item.nodeid, case_group(item)) for item in measured if item.get_closest_marker("correctness")}
        light = frozenset(i for i, group in enumerate(groups) if standby and
                          needs_only_load_and_generate(bench.backend_name, {suite_by_case[n] for n in group}))
        fresh = frozenset(i for i, group in enumerate(groups)
                          if _starts_fresh(bench.backend_name, {suite_by_case[n] for n in group}))
        alone = frozenset(i for i, group in enumerate(groups) if times_generation({suite_by_case[n] for n in group}))
        # an xdist worker runs the cases its scheduler sends: it knows only the next one
        bench.isolator = Isolator(bench.run_dir, bench.options, groups, session.config.getoption("timeout", None),
                                  standby, in_order=bench.options.worker_id is None,
                                  context=bench.processes(), light=light, fresh=fresh, alone=alone,
                                  before_first_go=bench.settle_calibration,
                                  correctness=frozenset(i for i, group in enumerate(groups) if set(group) <= checks),
                                  room=bench.room_beside)
        if measured:
            bench.build_ahead()


def _starts_fresh(engine: str, suites: set[str]) -> bool:
    """A child timing a cold load or generation starts as a fresh interpreter, as a user's script
    does, where the engine's children otherwise come from a fork server: a cold load there would
    follow more imports than a user's first load does, and generation decoded slower there than in
    a fresh interpreter. With standby its import overlaps the group before it."""
    return (times_a_cold_load(suites) or times_generation(suites)) and preloads_for(engine)


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session):
    """A worker comparing engines on one device waits for its turn (and for every worker to have
    imported its engine); the next turn starts when it ends, however it ends."""
    bench = session.config.stash.get(SESSION_KEY, None)
    if bench is None or bench.options.turn is None or bench.run_dir is None:
        return (yield)
    waited = wait_for_turn(bench.run_dir, bench.options.turn, session.config.workerinput["workercount"])
    bench.note_timing("waited_for_turn_s", waited)
    try:
        return (yield)
    finally:
        bench.end_turn()
        finish_turn(bench.run_dir, bench.options.turn)


def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """An isolated case ran in a child process (with its load group); its outcome is reported here."""
    bench = item.config.stash.get(SESSION_KEY, None)
    isolator = getattr(bench, "isolator", None)
    if isolator is None or not isolated(item) or item.get_closest_marker("skip"):
        if bench is not None:
            bench.settle_calibration()  # a case of this process: the GPU's ceilings measured first
        return None
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    following = strip_group(nextitem.nodeid, case_group(nextitem)) if nextitem is not None else None
    result = isolator.result(strip_group(item.nodeid, case_group(item)), following)
    bench.adopt(result.records)
    if result.died and not any(r.metric == "case" for r in result.records):
        # the process died without a word: one `case` record saying how
        _case_of(item)("case", None, status="failed", error=result.longrepr)
    longrepr = None if result.outcome == "passed" else (
        (str(item.path), item.location[1] or 0, (result.longrepr or "skipped").strip().splitlines()[-1][:200])
        if result.outcome == "skipped" else result.longrepr)
    for when in ("setup", "call", "teardown"):
        outcome = result.outcome if when == "call" else "passed"
        report = pytest.TestReport(item.nodeid, item.location, {k: 1 for k in item.keywords}, outcome,
                                   longrepr if when == "call" else None, when,
                                   duration=result.durations.get(when, 0.0))
        item.ihook.pytest_runtest_logreport(report=report)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


@pytest.fixture(scope="session")
def bench(request: pytest.FixtureRequest) -> BenchSession:
    return request.config.stash[SESSION_KEY]


@pytest.fixture(scope="session")
def backend(bench: BenchSession):
    from bench.backends import get_backend

    return get_backend(bench.backend_name, bench.device, **bench.workload.backend_options)


@pytest.fixture(scope="session")
def prepared(bench: BenchSession, backend, request: pytest.FixtureRequest) -> str:
    """The model's weights on disk (built, converted or found) before anything is timed."""
    started = time.perf_counter()
    _say(request.config, f"preparing {bench.source.spec} (built on first use and cached; a build takes a minute or more)")
    try:
        target = bench.prepare_safely(backend.prepare, backend.prepared)
    except BenchError as exc:  # e.g. a broken HF cache: say why, once per case, no traceback
        pytest.fail(f"cannot load {bench.source.spec}: {exc}", pytrace=False)
    bench.note_timing("prepare_model_s", time.perf_counter() - started)
    _say(request.config, f"{bench.source.spec} ready in {time.perf_counter() - started:.1f} s")
    return target


def _say(config: pytest.Config, line: str) -> None:
    """A progress line on the terminal while output is captured, so a long build is not silence."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or getattr(config, "workerinput", None) is not None:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line(f"gpt-oss bench: {line}")


@pytest.fixture(scope="session")
def seq_len(bench: BenchSession) -> int:
    """A training case's sequence length: the profile's, where the case does not set its own (the fit
    profile's points do)."""
    return bench.profile.max_seq_length


@pytest.fixture(scope="session")
def train_data(bench: BenchSession):
    """`train_data(tokenizer)`: the training set as prompt/completion text; `.rows` the raw rows."""
    from bench.data import TrainingData, load_training_dataset
    from bench.models.store import prompt_completion_sets

    return TrainingData(load_training_dataset(bench.options.dataset), prompt_completion_sets())


def _case_of(item: pytest.Item) -> Case | None:
    """The record keeper of a suite case, made on first use (also when its setup failed)."""
    bench = item.config.stash.get(SESSION_KEY, None)
    suite = suite_of(item)
    if bench is None or suite is None:
        return None
    if CASE_KEY not in item.stash:
        callspec = getattr(item, "callspec", None)
        test_id, params = strip_group(item.nodeid, case_group(item)), case_params(callspec.params if callspec else {})
        item.stash[CASE_KEY] = Case(test_id, suite, params, bench.device, bench.recorder(test_id, suite, params),
                                    beside=bench.beside)
    return item.stash[CASE_KEY]


@pytest.fixture
def case(request: pytest.FixtureRequest) -> Case:
    """Records measurements of this test case; checks run on each as it is written."""
    item_case = _case_of(request.node)
    if item_case is None:
        raise pytest.UsageError(f"{request.node.nodeid}: a test using `case` needs @pytest.mark.suite(name)")
    return item_case


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    """How long the case's fixtures took to set up (a model prepared or loaded for a module, a
    server started): its one-off costs, in the case's time record."""
    started = time.perf_counter()
    try:
        return (yield)
    finally:
        item.stash[SETUP_S_KEY] = time.perf_counter() - started


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    item_case = item.stash.get(CASE_KEY, None)
    if item_case is None:
        return (yield)
    interrupted, started = False, time.perf_counter()
    try:
        with item_case.tracking():
            result = yield
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        # An out-of-memory case keeps the peak it reached; a case cut short by an interrupt (Ctrl-C, a
        # timeout's SIGTERM) writes no closing records, so that --resume runs it again.
        if not interrupted:
            item_case.record_usage()
            item_case.record_time(item.stash.get(SETUP_S_KEY, 0.0), time.perf_counter() - started)
    problems = [f"baseline check failed: {message}" for message in item_case.failures]
    if problems:
        item_case.judged = True  # measured, then failed on its checks
        pytest.fail("\n".join(problems), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    item_case = item.stash.get(CASE_KEY, None) if report.passed else _case_of(item)
    if item_case is not None:
        from bench.harness.outcomes import record_outcome

        record_outcome(item_case, report, call)
    return report


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's tables: the harness's answer is the last thing printed
def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    bench = config.stash.get(SESSION_KEY, None)
    # a worker's or isolated child's terminal is a log nobody reads: the run's owner summarizes
    # (1-2 s a child, reading the whole run back)
    if bench is None or bench.run_dir is None or bench.options.worker_run:
        return
    from bench.harness.summary import summary_lines

    terminalreporter.section("gpt-oss bench")
    for line in summary_lines(bench):
        terminalreporter.write_line(line)


@pytest.hookimpl(tryfirst=True)  # before junitxml writes its file: the comparison's properties go in it
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    bench = session.config.stash.get(SESSION_KEY, None)
    if bench is None:
        return
    # An internal error (e.g. a second interrupt during pytest's own interrupt handling) ended the
    # run as surely as Ctrl-C did: never mark such a run complete.
    bench.finish(interrupted=exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR))
    if bench.options.require_checks and bench.run_dir is not None and not bench.outcomes \
            and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # --require-checks: nothing was checked
    if bench.comparison is None:
        return
    from bench.report.comparison import junit_properties

    xml = session.config.stash.get(junitxml_key, None)
    if xml is not None:
        for name, value in junit_properties(bench.comparison):
            xml.add_global_property(name, value)
    if bench.options.fail_on_regression and bench.comparison.failed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
