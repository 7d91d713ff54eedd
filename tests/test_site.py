"""`bench site`: groups of comparable runs, change points over each series with what differs across
them, `changes.json`, "not comparable" where nothing was compared, incremental updates, and every
page in a real headless browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bench.analysis.history import NOT_COMPARABLE, against_previous, groups
from bench.analysis.runs import load_run
from bench.report.site import build_site

from conftest import make_record, write_run

RNG = np.random.default_rng(11)


def run_records(run_id: str, decode: float) -> list:
    """One run of a quick-like profile: decode at two points, the warm load, a step time."""
    def timed(metric, centre, **params):
        samples = list(centre * (1 + RNG.normal(0, 0.01, 5)))
        return make_record(metric, float(np.median(samples)), samples=samples, run_id=run_id, **params)

    return [timed("decode_tok_s", decode, batch_size=1, effort="low"),
            timed("decode_tok_s", 200.0 * (1 + RNG.normal(0, 0.02)), batch_size=2, effort="medium"),
            timed("load_s", 0.5 * (1 + RNG.normal(0, 0.02)), cache="warm"),
            timed("s_per_step", 0.2 * (1 + RNG.normal(0, 0.02)), lora_r=8, batch_size=2, grad_accum=2)]


@pytest.fixture
def history(tmp_path) -> Path:
    """Twelve runs of one commit each; decode at batch 1 drops 30% from the eighth, with torch upgraded there."""
    root = tmp_path / "runs"
    for i in range(12):
        decode = 100.0 * (0.7 if i >= 7 else 1.0) * (1 + RNG.normal(0, 0.02))
        write_run(root, f"run-{i:02d}", run_records(f"run-{i:02d}", decode), started=1_760_000_000.0 + 3600 * i,
                  git_commit=f"{i:02d}" * 20, versions={"python": "3.11", "torch": "2.14.0" if i >= 7 else "2.13.0"})
    return root


def test_a_step_over_the_history_is_one_change_point_with_what_differs_across_it(history, tmp_path):
    done = build_site([history], tmp_path / "site")
    assert done == {"groups": 1, "rendered": ["cpu-tiny-gpt-oss-hf-quick"], "kept": [], "changes": 1, "runs": 12}
    [change] = json.loads((tmp_path / "site" / "changes.json").read_text())
    assert {k: change[k] for k in ("metric", "case", "run_id", "previous_run_id", "direction")} == {
        "metric": "decode_tok_s", "case": {"batch_size": 1, "effort": "low"}, "run_id": "run-07",
        "previous_run_id": "run-06", "direction": "regression"}
    assert 0.65 < change["after"] / change["before"] < 0.75
    assert change["commits"] == {"before": "06" * 20, "after": "07" * 20}
    assert change["packages"] == [{"package": "torch", "before": "2.13.0", "after": "2.14.0"}]
    site = tmp_path / "site"
    assert (site / change["link"]).is_file() and (site / "runs" / "run-11.html").is_file()
    page = (site / "groups" / "cpu-tiny-gpt-oss-hf-quick" / "index.html").read_text()
    assert 'id="infer-decode-tok-s-batch-size-1-effort-low"' in page and page.count("<svg") == 4
    landing = (site / "index.html").read_text()
    assert "groups/cpu-tiny-gpt-oss-hf-quick/index.html" in landing and re.search(r">-[23]\d\.\d%<", landing)


def test_a_run_with_nothing_comparable_to_the_one_before_never_reads_passed(tmp_path):
    write_run(tmp_path, "a", run_records("a", 100.0), started=1.0)
    write_run(tmp_path, "b", [make_record("final_loss", 1.2, run_id="b", lora_r=8)], started=2.0)
    write_run(tmp_path, "c", [make_record("final_loss", 1.2, run_id="c", lora_r=8)], started=3.0)
    [(group, runs)] = groups([load_run(tmp_path / r) for r in "abc"]).items()
    verdicts = against_previous(runs, 0.05)
    assert [v for v, _ in verdicts] == ["first run", NOT_COMPARABLE, "passed"]
    build_site([tmp_path], tmp_path / "site")
    group_page = (tmp_path / "site" / "groups" / group.slug / "index.html").read_text()
    assert "not comparable: no gating pair in common with the run before" in group_page


def test_adding_a_run_renders_its_group_again_and_keeps_the_others(history, tmp_path):
    site = tmp_path / "site"
    other = tmp_path / "other"
    for i in range(2):
        write_run(other, f"h-{i}", run_records(f"h-{i}", 50.0), started=1_770_000_000.0 + i, profile="standard")
    build_site([history, other], site)
    page = site / "groups" / "cpu-tiny-gpt-oss-hf-standard" / "index.html"
    before = page.stat().st_mtime_ns
    write_run(history, "run-12", run_records("run-12", 70.0), started=1_760_000_000.0 + 3600 * 12)
    done = build_site([history, other], site)
    assert done["rendered"] == ["cpu-tiny-gpt-oss-hf-quick"] and done["kept"] == ["cpu-tiny-gpt-oss-hf-standard"]
    assert page.stat().st_mtime_ns == before
    assert "run-12" in (site / "index.html").read_text()


def test_no_runs_is_one_line_saying_what_to_give(tmp_path):
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="no runs found"):
        build_site([tmp_path], tmp_path / "site")


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="no headless browser installed (apt-get install chromium)")
def test_every_page_loads_in_a_real_browser_without_a_console_error(history, tmp_path):
    site = tmp_path / "site"
    build_site([history], site)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'profile'}"]
    pages = sorted(site.rglob("*.html"))
    assert len(pages) == 1 + 1 + 1 + 12  # landing, group, one comparison, twelve runs
    for path in pages:
        proc = subprocess.run([_chromium(), *flags, "--dump-dom", path.as_uri()], capture_output=True, text=True,
                              timeout=120)
        console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Refused to" in line]
        assert not console and "</html>" in proc.stdout, (path, console)
    # the filters ran: the landing page's script, allowed by its hash, read the deep link's filter
    landing = subprocess.run([_chromium(), *flags, "--dump-dom", (site / "index.html").as_uri() + "#metric=s_per_step"],
                             capture_output=True, text=True, timeout=120).stdout
    rows = re.findall(r'<tr data-gpu[^>]*data-metric="([a-z_]+)"([^>]*)>', landing)
    assert sorted((metric, "hidden" in rest) for metric, rest in rows) == [
        ("decode_tok_s", True), ("decode_tok_s", True), ("load_s", True), ("s_per_step", False)]
    shots = Path(os.environ.get("BENCH_SCREENSHOT_DIR") or tmp_path)  # CI keeps them as artifacts
    shots.mkdir(parents=True, exist_ok=True)
    for name, path in (("site-landing", site / "index.html"),
                       ("site-trends", site / "groups" / "cpu-tiny-gpt-oss-hf-quick" / "index.html")):
        shot = shots / f"{name}.png"
        subprocess.run([_chromium(), *flags, f"--screenshot={shot}", "--window-size=1200,1600", path.as_uri()],
                       capture_output=True, timeout=120)
        assert shot.is_file() and shot.stat().st_size > 20_000
