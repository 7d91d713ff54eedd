"""A cross-check that stops part-way (a repeat fails, or the user interrupts it) keeps the repeats it
finished: each one is minutes of a GPU, and paired repeats still make ratios."""

from __future__ import annotations

import pytest

from bench.errors import BenchError
from bench.fidelity import crosscheck as xc


@pytest.fixture
def sides(monkeypatch, tmp_path):
    """Both sides faked; `fail_at` is the harness call (counted from 0) that fails."""
    state = {"harness_calls": 0, "fail_at": None, "error": BenchError("the harness exited 3")}
    monkeypatch.setattr(xc, "plain_spec", lambda setup, folder: {})
    monkeypatch.setattr(xc, "_plain", lambda spec, stem, setup, first=False: {"started": 0.0, "stem": stem.name})

    def harness(run_dir, setup):
        call = state["harness_calls"]
        state["harness_calls"] += 1
        if call == state["fail_at"]:
            raise state["error"]
        return [f"harness-{call}"]

    monkeypatch.setattr(xc, "_harness", harness)

    def records(run_dir, setup, first, plain_runs, harness_runs, stamp):
        state["paired"] = (plain_runs, harness_runs)
        return ["ratio"]

    monkeypatch.setattr(xc, "_records", records)
    return state, tmp_path


@pytest.mark.parametrize("error", [BenchError("the harness exited 3"), KeyboardInterrupt()])
def test_a_stop_after_a_repeat_keeps_the_finished_repeats_paired(sides, error):
    state, run_dir = sides
    state["fail_at"], state["error"] = 2, error
    records, stopped = xc.crosscheck(run_dir, setup=None, repeats=3)
    plain_runs, harness_runs = state["paired"]
    # the third plain script ran, but its harness did not: it is left out, the pairs stay pairs
    assert harness_runs == [["harness-0"], ["harness-1"]] and len(plain_runs) == 2
    assert records == ["ratio"] and stopped.startswith("the cross-check stopped after 2 of 3 repeats")
    assert len(list((run_dir / "crosscheck").glob("order-*.json"))) == 1


def test_a_stop_before_any_repeat_finished_is_an_error(sides):
    state, run_dir = sides
    state["fail_at"] = 0
    with pytest.raises(BenchError, match="exited 3"):
        xc.crosscheck(run_dir, setup=None, repeats=3)


def test_every_repeat_finished_is_no_stop(sides):
    state, run_dir = sides
    records, stopped = xc.crosscheck(run_dir, setup=None, repeats=2)
    assert stopped is None and len(state["paired"][1]) == 2
