"""How a process takes part in a run (bench.harness.run_modes), with a stand-in session: what each
mode sets up is returned, not written into the session, and the session's state is left as it was."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

from bench.harness.run_modes import (IsolatedCaseRun, NewRun, Opened, ResumedRun, WorkerRun, mode_for,
                                     new_manifest)
from bench.harness.option_table import BenchOptions
from bench.models import resolve_model
from bench.records.profiles import get_profile
from bench.records.results import RunManifest, read_results

from conftest import make_record, write_run


def session(tmp_path: Path, **fields) -> SimpleNamespace:
    calls: list[str] = []
    s = SimpleNamespace(
        options=BenchOptions(), argv=["pytest", "suites/"], profile=get_profile("quick"),
        source=resolve_model("tiny-gpt-oss"), plan=None, device="cpu", gpu=None, gpu_indices=None, hardware="cpu",
        backend_name="hf", baseline=None, baseline_hardware_matches=True, price_per_hour=None,
        workload=SimpleNamespace(case_options={"--profile": "quick"}), run_dir=None,
        planned_dir=tmp_path / "new", resume_dir=None, manifest=None, timings={"engine_import_s": 1.5},
        calibration={}, left_out=None, left_on_device_gb=None, first_child_fresh=False, calls=calls,
        wait_for_engine=lambda: calls.append("wait"), calibrate=lambda say=None: {"copy_gbps": 1.0},
        calibrate_meanwhile=lambda: calls.append("meanwhile"))
    for name, value in fields.items():
        setattr(s, name, value)
    return s


def take(s: SimpleNamespace, opened: Opened) -> None:
    """What BenchSession.start does with what a mode returns."""
    s.run_dir, s.writer, s.manifest = opened.run_dir, opened.writer, opened.manifest
    s.timings = s.timings if opened.timings is None else opened.timings


def test_the_mode_follows_the_processs_part_in_the_run(tmp_path):
    assert type(mode_for(BenchOptions(), None, None)) is NewRun
    assert type(mode_for(BenchOptions(), None, tmp_path)) is ResumedRun
    assert type(mode_for(BenchOptions(worker_run=str(tmp_path)), None, None)) is IsolatedCaseRun
    assert type(mode_for(BenchOptions(worker_run=str(tmp_path), worker_id="gw0"), None, None)) is WorkerRun


def test_a_new_run_returns_its_directory_manifest_and_timings_and_leaves_the_session_alone(tmp_path):
    s = session(tmp_path, left_out="profile quick leaves out serve")
    opened = NewRun().open(s)
    assert s.run_dir is None and s.manifest is None and s.timings == {"engine_import_s": 1.5}  # untouched
    assert opened.run_dir == tmp_path / "new" and opened.run_dir.is_dir()
    assert opened.manifest.run_id == "new" and opened.manifest.calibration == {"copy_gbps": 1.0}
    assert opened.manifest.timings is opened.timings and opened.timings["startup_s"] >= 0
    assert opened.timings["engine_import_s"] == 1.5 and "profile quick leaves out serve" in opened.manifest.notes
    assert s.calls == ["wait"]
    take(s, opened)
    NewRun().note(s)  # the session then has the mode write what it owns
    assert RunManifest.read(opened.run_dir).run_id == "new"
    opened.writer.close()


def test_a_run_whose_first_child_starts_fresh_measures_the_gpu_meanwhile(tmp_path):
    s = session(tmp_path, first_child_fresh=True)
    opened = NewRun().open(s)
    assert s.calls == ["wait", "meanwhile"] and opened.manifest.calibration == {}
    opened.writer.close()


def test_a_resumed_run_keeps_its_finished_cases_and_adds_this_parts_time(tmp_path):
    done = replace(make_record("peak_rss_gb", 1.0), test_id="suites/test_load.py::test_load[cold]")
    cut = replace(make_record("load_s", 2.0, cache="warm"), test_id="suites/test_load.py::test_load[warm]")
    run = write_run(tmp_path, "killed", [replace(done, metric="load_s"), done, cut], timings={"startup_s": 3.0})
    s = session(tmp_path, resume_dir=run)
    opened = ResumedRun().open(s)
    assert opened.finished == {"suites/test_load.py::test_load[cold]"}
    assert {r.test_id for r in read_results(run)} == opened.finished  # the unfinished case's records are gone
    assert opened.manifest.status == "incomplete" and "with 1 cases already finished" in opened.manifest.notes[-1]
    assert opened.timings["startup_s"] > 3.0 and opened.timings["engine_import_s"] == 1.5
    assert "run_wall_s" in opened.timings  # it lasted at least to its last record
    assert s.timings == {"engine_import_s": 1.5}
    opened.writer.close()


def test_an_isolated_child_appends_to_its_parents_run_and_owns_nothing(tmp_path):
    run = write_run(tmp_path, "parent", [])
    s = session(tmp_path, options=BenchOptions(worker_run=str(run)))
    opened = IsolatedCaseRun().open(s)
    assert opened.run_dir == run and opened.manifest.run_id == "parent" and opened.timings is None
    opened.writer.close()


def test_a_new_manifest_says_what_to_know_when_reading_it(tmp_path):
    s = session(tmp_path, source=resolve_model("replica:gpt-oss-20b"),
                baseline=SimpleNamespace(path=tmp_path / "b.toml", name="seed", about="the RTX 3090 run",
                                         gpu="RTX 3090"), baseline_hardware_matches=False)
    manifest = new_manifest(s, tmp_path / "r", {"startup_s": 1.0})
    assert manifest.run_id == "r" and manifest.timings == {"startup_s": 1.0} and manifest.options == {"--profile": "quick"}
    notes = " | ".join(manifest.notes)
    assert "baseline 'seed': the RTX 3090 run" in notes and "was measured on RTX 3090, not on cpu" in notes
    assert "replica:gpt-oss-20b" in notes  # why its loss means nothing
