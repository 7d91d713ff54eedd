"""Where a run's time went (`bench.analysis.time_budget`): pure arithmetic on case time records."""

import dataclasses
import math

import pytest

from bench.analysis.time_budget import time_budget

from conftest import make_record


def _case(suite: str, name: str, setup: float, call: float, timed: float, **phases: float):
    record = make_record("case_s", setup + call, suite=suite,
                         extra={"setup_s": setup, "call_s": call, "timed_s": timed, "phases": phases})
    return dataclasses.replace(record, test_id=f"suites/test_{suite}.py::{name}")


def test_overhead_is_wall_time_less_timed_work_and_one_off_costs():
    records = [_case("infer", "a", 4.0, 6.0, 3.0, **{"warm-up round": 1.0, "profiled round": 0.5}),
               _case("infer", "b", 0.0, 5.0, 4.0, **{"warm-up round": 0.25, "profiled round": 0.75, "cpu only": 0.0}),
               _case("train", "t", 1.0, 9.0, 5.0)]
    budget = time_budget(records, {"run_wall_s": 40.0, "startup_s": 6.0}, order=("train", "infer"))
    assert [s.suite for s in budget.suites] == ["train", "infer"]  # the suites' own order
    infer = budget.suites[1]
    # one-off: the fixtures' setup and the warm-up rounds; the profiled rounds are what measuring added
    assert (infer.cases, infer.case_s, infer.setup_s, infer.timed_s) == (2, 15.0, 4.0, 7.0)
    assert (infer.one_off_s, infer.untimed_s) == (5.25, 2.75)
    assert infer.largest_phases() == [("profiled round", 1.25)]  # summed; nothing for what took 0 s
    assert infer.largest_phases(one_off=True) == [("warm-up round", 1.25)]
    assert (budget.timed_s, budget.one_off_s) == (12.0, 6.25)
    assert budget.overhead_s == 40.0 - 12.0 - 6.25
    assert budget.untimed_in_cases_s + budget.outside_cases_s == pytest.approx(budget.overhead_s)
    assert budget.share(budget.overhead_s) == pytest.approx(21.75 / 40)
    assert budget.headline().startswith("time: 40.0 s; timed rounds 12.0 s (30%), one-off costs 6.2 s (16%)")


def test_a_case_measured_again_counts_once():
    """A resumed or confirmed case wrote its time twice: the last record is the case's."""
    first, again = _case("load", "warm", 0.0, 50.0, 1.0), _case("load", "warm", 0.0, 2.0, 1.0)
    budget = time_budget([first, again], {"run_wall_s": 10.0})
    assert budget.suites[0].cases == 1 and budget.suites[0].case_s == 2.0


def test_workers_at_once_multiply_the_capacity_and_workers_taking_turns_do_not():
    records = [_case("infer", "a", 0.0, 30.0, 20.0), _case("infer", "b", 0.0, 30.0, 20.0)]
    side_by_side = time_budget(records, {"run_wall_s": 40.0}, workers=[{"turn": None}, {"turn": None}])
    assert side_by_side.lanes == 2 and side_by_side.overhead_s == 80.0 - 40.0
    assert "x 2 workers" in side_by_side.headline()
    turns = time_budget(records, {"run_wall_s": 70.0}, workers=[{"turn": 0}, {"turn": 1}])
    assert turns.lanes == 1 and turns.overhead_s == 30.0


def test_the_engine_import_the_run_waited_for_is_a_one_off_cost_outside_the_cases():
    records = [_case("infer", "a", 0.0, 30.0, 20.0)]
    budget = time_budget(records, {"run_wall_s": 60.0, "startup_s": 2.0, "engine_import_s": 15.0})
    assert (budget.engine_import_s, budget.one_off_s) == (15.0, 15.0)
    assert budget.overhead_s == 60.0 - 20.0 - 15.0
    assert budget.outside_cases_s == 60.0 - 30.0 - 15.0  # overhead outside the cases: not the import
    assert budget.untimed_in_cases_s + budget.outside_cases_s == pytest.approx(budget.overhead_s)
    # workers side by side import in their own lanes; taking turns, the later ones import during the first's turn
    per_worker = {"run_wall_s": 60.0, "engine_import_s (gw0)": 15.0, "engine_import_s (gw1)": 12.0}
    assert time_budget(records, per_worker, workers=[{"turn": None}, {"turn": None}]).engine_import_s == 27.0
    assert time_budget(records, per_worker, workers=[{"turn": 0}, {"turn": 1}]).engine_import_s == 15.0


def test_a_run_without_a_recorded_wall_time_has_no_budget():
    assert time_budget([_case("load", "cold", 0, 1, 1)], {}) is None  # made before this was measured


def test_a_run_that_measured_no_case_is_all_overhead():
    budget = time_budget([], {"run_wall_s": 3.0})
    assert budget.timed_s == 0 and math.isclose(budget.share(budget.overhead_s), 1.0) and budget.suites == ()


def test_checks_that_ran_side_by_side_add_the_time_one_ran_beside_the_other():
    """Two checks of 30 and 40 s at once in a 50 s run: 30 s ran beside the other, and without
    counting them the cases' 70 s would exceed the run's wall time."""
    records = [_case("train", "resume", 0.0, 30.0, 0.0), _case("adapter", "roundtrip", 0.0, 40.0, 0.0)]
    budget = time_budget(records, {"run_wall_s": 50.0, "isolation_beside_s": 30.0})
    assert budget.capacity_s == 80.0 and budget.outside_cases_s == 10.0
    assert budget.untimed_in_cases_s + budget.outside_cases_s == pytest.approx(budget.overhead_s)
    assert "+ 30.0 s of correctness checks side by side" in budget.headline()
