"""The curated example runs: few and small, each folder saying what to look at, and every run's
report rendered again with today's code, so that none of them can rot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.report import render_run

from conftest import REPO

EXAMPLES = REPO / "reports" / "examples"
# the example runs, not the rounds of a `bench ab` or `bench bisect` nor a cross-check's harness repeats
# (their records are the evidence; ab.md and the run's fidelity table say so)
EVIDENCE = {"runs", "crosscheck"}
RUNS = sorted(p.parent for p in EXAMPLES.rglob("manifest.json")
              if (p.parent / "results.jsonl").is_file() and not EVIDENCE & set(p.relative_to(EXAMPLES).parts))


def test_the_examples_are_a_curated_set_each_saying_what_to_look_at():
    folders = [p for p in EXAMPLES.iterdir() if p.is_dir()]
    assert len(folders) <= 12
    assert sum(f.stat().st_size for f in EXAMPLES.rglob("*") if f.is_file()) <= 8_000_000
    assert [f.name for f in folders if not (f / "README.md").is_file()] == []
    assert len(RUNS) >= 8


@pytest.mark.slow
@pytest.mark.parametrize("run", RUNS, ids=[str(r.relative_to(EXAMPLES)) for r in RUNS])
def test_every_example_run_renders_with_todays_code(run: Path, tmp_path):
    copy = tmp_path / run.name
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("report.html", "summary.md"))
    html, md = render_run(copy)
    page = html.read_text()
    assert '<table id="checks">' in page and "</html>" in page and md.read_text().startswith("### gpt-oss bench")
