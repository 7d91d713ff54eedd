import dataclasses
import json

import pytest

from bench.analysis.baselines import load_baseline
from bench.commands.cli import main
from bench.records.results import RunManifest, read_results

from conftest import make_record

RUNS = [
    ("base", 100.0, 1.00), ("same", 100.5, 1.01), ("slow", 70.0, 1.40),
]


def _records(decode: float, step: float, run_id: str):
    return [
        make_record("decode_tok_s", decode, samples=[decode * f for f in (0.99, 1.0, 1.01, 1.0, 0.995)],
                    run_id=run_id, batch_size=1, effort="low"),
        make_record("s_per_step", step, samples=[step * f for f in (0.99, 1.0, 1.01, 1.0, 1.005)], run_id=run_id,
                    lora_r=8, batch_size=2, grad_accum=2),
        make_record("peak_rss_gb", 0.7, run_id=run_id, suite="train", lora_r=8, batch_size=2, grad_accum=2),
    ]


@pytest.fixture
def runs(run_factory):
    return {name: run_factory(name, _records(d, s, name)) for name, d, s in RUNS}


def test_compare_exit_codes(runs, capsys, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert main(["compare", str(runs["base"]), str(runs["same"])]) == 0
    assert main(["compare", str(runs["base"]), str(runs["slow"])]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "decode_tok_s" in out and "s_per_step" in out
    assert main(["compare", str(runs["base"]), "/no/such/run"]) == 2
    assert main(["compare", str(runs["base"])]) == 2  # argparse usage error


def test_compare_json_and_markdown_and_step_summary(runs, capsys, tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    main(["compare", str(runs["base"]), str(runs["slow"]), "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    verdicts = {c["metric"]: c["verdict"] for c in data["changes"]}
    assert verdicts["decode_tok_s"] == "regression" and verdicts["s_per_step"] == "regression"
    assert data["counts"]["regression"] == 2
    main(["compare", str(runs["base"]), str(runs["slow"]), "--format", "markdown"])
    md = capsys.readouterr().out
    assert "| **REGRESSION** | infer | `batch_size=1, effort=low` | decode_tok_s |" in md
    assert "**2 regressions**" in summary.read_text()


def test_report_of_several_runs_and_history(runs, tmp_path):
    out = tmp_path / "page.html"
    assert main(["report", str(runs["base"]), str(runs["slow"]), "-o", str(out)]) == 0
    html = out.read_text()
    assert "2 runs compared" in html and "regression" in html and html.count("<svg") >= 2
    assert main(["report", str(runs["base"].parent), "--history", "-o", str(tmp_path / "h.html")]) == 0
    assert "History of 3 runs" in (tmp_path / "h.html").read_text()


def test_baseline_save_from_one_run_checks_single_readings_and_keeps_timings_as_references(runs, run_factory, tmp_path):
    run = run_factory("with-loss", _records(100, 1.0, "with-loss") + [make_record("final_loss", 1.2, lora_r=8,
                                                                                  batch_size=2, grad_accum=2)])
    assert main(["baseline", "save", str(run), "--name", "frozen", "--dir", str(tmp_path)]) == 0
    b = load_baseline(tmp_path / "frozen.toml")
    assert b.profile == "quick" and "one run cannot show the drift" in (tmp_path / "frozen.toml").read_text()
    assert {c.metric: c.max for c in b.checks} == {"final_loss": pytest.approx(1.2 * 1.05)}
    assert {r.metric for r in b.references} >= {"decode_tok_s", "s_per_step", "final_loss"}
    assert main(["baseline", "save", str(run), "--name", "frozen", "--dir", str(tmp_path)]) == 2  # exists


def test_baseline_save_takes_limits_from_the_spread_of_several_runs(runs, tmp_path):
    assert main(["baseline", "save", str(runs["base"]), str(runs["same"]), "--name", "two", "--dir", str(tmp_path)]) == 0
    text = (tmp_path / "two.toml").read_text()
    assert "2 runs: limits are each case's worst run" in text and "[thresholds]" in text
    checks = {c.metric: c for c in load_baseline(tmp_path / "two.toml").checks}
    assert checks["s_per_step"].max >= 1.01 * 1.05  # the worse of the two runs, widened
    assert checks["decode_tok_s"].min == pytest.approx(100.0 / 1.05, rel=1e-5)  # the slower run, widened
    slow = {r.metric: r for r in read_results(runs["slow"])}
    assert not checks["decode_tok_s"].passes(slow["decode_tok_s"].value)
    assert "peak_rss_gb" not in checks  # a diagnostic: never frozen into a check


def test_baseline_save_refuses_a_run_made_with_a_test_hook(run_factory, tmp_path, capsys):
    hooked = run_factory("hooked", _records(100, 1.0, "hooked"), test_hooks={"BENCH_TEST_SLOWDOWN": "0.25"})
    assert main(["baseline", "save", str(hooked), "--name", "x", "--dir", str(tmp_path)]) == 2
    assert "test-only hooks" in capsys.readouterr().err and not (tmp_path / "x.toml").exists()


def test_export_is_pytest_benchmark_json(runs, tmp_path):
    out = tmp_path / "pb.json"
    assert main(["export", str(runs["base"]), "-o", str(out)]) == 0
    data = json.loads(out.read_text())
    assert {"machine_info", "commit_info", "benchmarks", "datetime", "version"} <= set(data)
    [bm] = data["benchmarks"]  # only time-valued metrics are benchmarks
    assert bm["name"].endswith("::s_per_step") and bm["stats"]["rounds"] == 5
    assert sorted(bm["stats"]["data"])[2] == pytest.approx(1.0) and bm["stats"]["median"] == pytest.approx(1.0)
    assert bm["extra_info"]["s_per_step"] == 1.0


def test_a_path_that_cannot_be_written_is_one_line_and_exit_2(runs, tmp_path, capsys):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    assert main(["export", str(runs["base"]), "-o", str(blocked / "pb.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"bench export: {blocked / 'pb.json'}: Not a directory; check the path and its permissions"


def test_merge_keeps_every_record_once(run_factory, tmp_path):
    a = run_factory("shard-a", _records(100, 1.0, "shard-a")[:2])
    b = run_factory("shard-b", _records(100, 1.0, "shard-b")[1:])
    out = tmp_path / "merged"
    assert main(["merge", str(a), str(b), "-o", str(out)]) == 0
    merged = read_results(out)
    assert sorted(r.metric for r in merged) == ["decode_tok_s", "peak_rss_gb", "s_per_step"]
    assert all(r.run_id == "merged" for r in merged)
    assert RunManifest.read(out).status == "complete" and (out / "report.html").is_file()
    assert main(["merge", str(a), str(b), "-o", str(out)]) == 2  # not over an existing run


def test_merge_takes_a_retried_case_from_the_part_where_it_did_not_fail(run_factory, tmp_path):
    failed = dataclasses.replace(_records(100, 1.0, "first")[0], metric="case", value=None, status="failed")
    first = run_factory("first", [failed, *_records(100, 1.0, "first")[1:]])
    retry = run_factory("retry", _records(80, 1.0, "retry")[:1])
    out = tmp_path / "merged"
    assert main(["merge", str(first), str(retry), "-o", str(out)]) == 0
    merged = read_results(out)
    assert [r.metric for r in merged if r.test_id == failed.test_id] == ["decode_tok_s"]
    assert [r.metric for r in merged if r.status == "failed"] == []
