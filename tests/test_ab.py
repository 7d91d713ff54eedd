"""`bench ab` and `bench errorrate`: the round order, the judging of a chain, and one real A/A run of
two checkouts of this repository in alternating rounds."""

import json
from pathlib import Path

import numpy as np
import pytest

from bench.commands.ab import checkout, order, plugin_module
from bench.commands.errorrate import judge_chain
from bench.analysis.compare import Rules

from conftest import REPO, make_record

RNG = np.random.default_rng(9)


def test_rounds_alternate_which_side_goes_first():
    assert [order(i) for i in range(3)] == [("A", "B"), ("B", "A"), ("A", "B")]


def test_a_checkout_knows_where_its_plugin_lives(tmp_path):
    assert plugin_module(REPO) == "bench.harness.plugin"
    (tmp_path / "bench").mkdir()
    assert plugin_module(tmp_path) == "bench.plugin"  # a version from before the layered packages


def fake_checkout(root: Path, then: str = "") -> Path:
    """A checkout whose plugin takes the harness's options and whose one test writes an empty
    results file into its run directory, then does `then`."""
    (root / "bench" / "harness").mkdir(parents=True)
    for init in ("bench/__init__.py", "bench/harness/__init__.py"):
        (root / init).write_text("")
    (root / "bench" / "harness" / "plugin.py").write_text(
        "def pytest_addoption(parser):\n    parser.addoption('--report-dir')\n    parser.addoption('--run-id')\n")
    (root / "test_round.py").write_text(
        "import os, pathlib\n"
        "def test_round(request):\n"
        "    run = pathlib.Path(request.config.getoption('--report-dir')) / request.config.getoption('--run-id')\n"
        "    run.mkdir(parents=True)\n"
        "    (run / 'results.jsonl').write_text('')\n" + (f"    {then}\n" if then else ""))
    return root


def test_a_round_that_crashes_keeps_its_whole_output_and_names_the_fatal_error(tmp_path):
    import os

    from bench.commands.ab import OUTPUT_FILE, Checkout, run_side
    from bench.errors import BenchError

    tree = fake_checkout(tmp_path, then="os.abort()")
    runs = tmp_path / "runs"
    with pytest.raises(BenchError) as err:
        run_side(Checkout("B", ".", None, tree), ["test_round.py"], runs, "B-1", dict(os.environ))
    message = str(err.value)
    assert "round B-1 (.) exited -6 before it finished" in message and str(runs / "B-1" / OUTPUT_FILE) in message
    # the top of faulthandler's dump, which the last lines of a long dump leave out
    assert "Fatal Python error: Aborted" in message
    assert "test_round.py" in (runs / "B-1" / OUTPUT_FILE).read_text()


def test_a_relative_report_directory_is_this_directorys_not_the_worktrees(tmp_path, monkeypatch):
    """A round runs in its ref's worktree; `--report-dir reports` (the default) means the directory
    bench ab was started in, where it then looks for the round's results."""
    import os

    from bench.commands.ab import Checkout, run_side

    tree = fake_checkout(tmp_path / "worktree")
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    run_dir = run_side(Checkout("A", ".", None, tree), ["test_round.py"], Path("reports/x/runs"), "A-0", dict(os.environ))
    assert run_dir == here / "reports" / "x" / "runs" / "A-0" and (run_dir / "results.jsonl").is_file()
    assert not (tree / "reports").exists()


def test_the_working_tree_is_used_as_it_is_and_bad_refs_are_one_line(tmp_path):
    [a, b] = checkout((".", "."), REPO, tmp_path)
    assert a.root == b.root == REPO and a.commit is None
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="no-such-ref: not a commit"):
        checkout(("no-such-ref", "."), REPO, tmp_path)


def _run(factor: float, drift: float):
    return [make_record("s_per_step", 1.0, samples=list(drift * factor * RNG.normal(1, 0.02, 20)), lora_r=8),
            make_record("decode_tok_s", 100.0, samples=list(100 / (drift * factor) * RNG.normal(1, 0.02, 3)),
                        batch_size=1, effort="low")]


def test_a_chain_is_judged_per_round_as_compare_and_per_window_as_ab():
    drift = [1.0, 1.1, 0.95, 1.05, 0.9, 1.0]
    aa = judge_chain([_run(1.0, d) for d in drift], [_run(1.0, d) for d in drift], 3, Rules(), Rules())
    assert aa["compare"]["pairs"] == 6 and aa["ab"]["experiments"] == 2 and aa["ab"]["overlapping_experiments"] == 4
    assert aa["ab"]["alarms"] == 0
    slowed = judge_chain([_run(1.0, d) for d in drift], [_run(1.25, d) for d in drift], 3, Rules(), Rules())
    assert slowed["ab"]["alarms"] == 2 and slowed["compare"]["alarms"] == 6
    assert any("s_per_step" in name for name in slowed["ab"]["named"][0])


def test_errorrate_judges_chains_it_already_ran_again_without_running_them(tmp_path, capsys):
    from bench.commands.cli import main
    from conftest import write_run

    drift = [1.0, 1.1, 0.95, 1.05]
    for chain, factor in (("aa", 1.0), ("slow25", 1.25)):
        for i, d in enumerate(drift):
            write_run(tmp_path / chain / "runs", f"A-{i}", _run(1.0, d))
            write_run(tmp_path / chain / "runs", f"B-{i}", _run(factor, d))
    (tmp_path / "errorrate.json").write_text(json.dumps({"experiments": 2, "rounds": 2, "conditions": {
        "unchanged": {"slowdown": 0.0}, "slowed 25%": {"slowdown": 0.25}}}))
    assert main(["errorrate", "--judge-only", "--out", str(tmp_path), "--rounds", "4", "--max-rounds", "4"]) == 0
    table = capsys.readouterr().out
    assert "| unchanged | 0 of 4 | 0 of 1 |" in table and "| slowed 25% | 4 of 4 | 1 of 1 |" in table
    assert main(["errorrate", "--judge-only", "--out", str(tmp_path / "aa")]) == 2
    assert "holds no chain" in capsys.readouterr().err


def test_a_chain_a_time_limit_cut_short_is_judged_on_its_complete_rounds(tmp_path, capsys):
    from bench.commands.cli import main
    from conftest import write_run

    drift = [1.0, 1.1, 0.95, 1.05]
    for i, d in enumerate(drift):
        write_run(tmp_path / "slow25" / "runs", f"A-{i}", _run(1.0, d))
        write_run(tmp_path / "slow25" / "runs", f"B-{i}", _run(1.25, d))
    write_run(tmp_path / "slow25" / "runs", "A-4", _run(1.0, 1.0))  # its B was never run
    assert main(["errorrate", "--judge-only", "--out", str(tmp_path), "--rounds", "3", "--max-rounds", "3"]) == 0
    assert "| slowed 25% | 4 of 4 | 1 of 1 | 2 of 2 | 3.0 |" in capsys.readouterr().out
    # an unchanged chain ran to its end before it (errorrate.json names only that one): both are judged
    for i, d in enumerate(drift[:3]):
        for side in "AB":
            write_run(tmp_path / "aa" / "runs", f"{side}-{i}", _run(1.0, d))
    (tmp_path / "errorrate.json").write_text(json.dumps({"conditions": {"unchanged": {"slowdown": 0.0}}}))
    assert main(["errorrate", "--judge-only", "--out", str(tmp_path), "--rounds", "3", "--max-rounds", "3"]) == 0
    table = capsys.readouterr().out
    assert "| unchanged | 0 of 3 | 0 of 1 |" in table and "| slowed 25% | 4 of 4 | 1 of 1 |" in table


def test_errorrate_never_writes_a_chain_over_an_older_one(tmp_path, capsys):
    """Its later rounds would stay beside the new chain's and be judged as its own."""
    from bench.commands.cli import main
    from conftest import write_run

    write_run(tmp_path / "slow10" / "runs", "A-0", _run(1.0, 1.0))
    assert main(["errorrate", "--out", str(tmp_path), "--slowdowns", "0,0.1", "--", "suites/test_load.py"]) == 2
    err = capsys.readouterr().err
    assert "slow10 already holds a chain" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "aa").exists()  # refused before anything ran


def test_looks_come_every_rounds_rounds_and_at_the_most():
    from bench.analysis.compare import look_points
    from bench.commands.ab import max_rounds_of
    from bench.errors import BenchError

    assert look_points(5, 15) == [5, 10, 15] and look_points(5, 12) == [5, 10, 12] and look_points(5, 5) == [5]
    assert max_rounds_of(5, None) == 20 and max_rounds_of(5, 5) == 5
    with pytest.raises(BenchError, match="--max-rounds 3: give at least --rounds"):
        max_rounds_of(5, 3)


def _step_runs(factor: float, rounds: int, seed: int, noise: float = 0.08):
    """Rounds of one training case whose whole-run time moves by `noise` (sd) from round to round."""
    rng = np.random.default_rng(seed)
    return [[make_record("s_per_step", 1.0, samples=list(factor * d * rng.normal(1, 0.01, 10)), lora_r=8)]
            for d in np.exp(rng.normal(0, noise, rounds))]


def test_more_rounds_only_while_an_all_cases_pair_points_at_a_regression_it_cannot_call():
    from bench.analysis.compare import replay_sequential, worth_more_rounds, compare_rounds

    base = _step_runs(1.0, 15, seed=1)
    same = _step_runs(1.0, 15, seed=2)
    cmp, used = replay_sequential(base, same, Rules(), 5, 15)
    assert not cmp.failed and used == 5 and not worth_more_rounds(compare_rounds(base[:5], same[:5], looks=3))
    slower = _step_runs(1.12, 15, seed=2)  # the same noise, 12% slower
    first = compare_rounds(base[:5], slower[:5], looks=3)
    assert not first.failed and [c.metric for c in worth_more_rounds(first)] == ["s_per_step"]
    cmp, used = replay_sequential(base, slower, Rules(), 5, 15)
    assert cmp.failed and used > 5 and cmp.looks == 3
    assert cmp.alpha == pytest.approx(Rules().alpha / 3)  # each look at a third: all three together at alpha
    from bench.report.comparison import method_text

    text = method_text(cmp)  # what every view prints
    assert "one of 3 planned" in text and "at most 5% of the time" in text


def test_bench_ab_stops_at_the_first_look_that_decides(tmp_path, monkeypatch):
    import bench.commands.ab as ab

    ran = []
    monkeypatch.setattr(ab, "run_side", lambda side, args, runs, run_id, env: ran.append(run_id) or tmp_path)
    monkeypatch.setattr(ab, "read_results", lambda run_dir: [])
    a, b = ab.run_ab((".", "."), [], tmp_path, 2, looks=[2, 4, 6], enough=lambda a, b: len(a) >= 4, echo=lambda _: None)
    assert len(a) == len(b) == 4 and ran == ["A-0", "B-0", "B-1", "A-1", "A-2", "B-2", "B-3", "A-3"]
    ran.clear()
    ab.run_ab((".", "."), [], tmp_path, 2, looks=[2, 4, 6], enough=lambda a, b: False, echo=lambda _: None)
    assert len(ran) == 12


def test_an_interval_never_reads_as_100_percent_confident():
    from bench.report.comparison import confidence_text

    assert confidence_text(0.95) == "95.0%" and confidence_text(0.9996) == "99.96%"
    assert confidence_text(0.99996) == "99.996%"
