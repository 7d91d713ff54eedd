import dataclasses
import os
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest

from bench.report import render_run
from bench.records.results import Measurement

from conftest import REPO, make_record

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _records() -> list[Measurement]:
    curve = [[1, 2.1], [2, 1.8], [3, 1.2]]
    return [
        make_record("load_s", 0.2, samples=[0.19, 0.2, 0.22], cache="warm"),
        make_record("s_per_step", 0.17, samples=[0.16, 0.17, 0.18], extra={"loss_curve": curve},
                    lora_r=8, batch_size=2, grad_accum=2),
        make_record("final_loss", 1.7, lora_r=8, batch_size=2, grad_accum=2),
        make_record("decode_tok_s", 220.0, samples=[215.0, 220.0, 224.0], extra={"sample": HOSTILE},
                    batch_size=1, effort="low"),
        make_record("case", None, status="oom", error=f"CUDA out of memory {HOSTILE}", batch_size=8, effort="high"),
    ]


@pytest.fixture
def rendered(run_factory):
    run_dir = run_factory("run-1", _records(), baseline=str(REPO / "bench" / "documented" / "tiny-gpt-oss-cpu.toml"),
                          model=f"evil/{HOSTILE}", notes=[f"note {HOSTILE}"])
    html, md = render_run(run_dir)
    return html.read_text(), md.read_text(), html


def test_report_shows_checks_with_measured_and_documented_values(rendered):
    html, md, _ = rendered
    row = re.search(r"<tr><td>final_loss &lt;= 1.5</td>.*?</tr>", html, re.S).group(0)
    assert "1.7" in row and "1.43" in row and "FAIL" in row  # measured, documented, verdict
    assert "load_s &lt;= 5" in html and "pass" in html
    assert "decode_tok_s &gt;= 2 where batch_size=1" in html
    # markdown carries no HTML entities into CI logs, and user text sits in code spans, where a renderer shows HTML as text
    assert "**FAIL**" in md and "`final_loss <= 1.5`" in md and "&lt;" not in md and "&#39;" not in md
    assert all(line.count("`") % 2 == 0 for line in md.splitlines()) and "`evil/<script>" in md


def test_report_marks_oom_as_its_own_state(rendered):
    html, _, _ = rendered
    assert 'class="status-oom">oom<' in html


def test_report_embeds_charts_and_loads_nothing_from_the_network(rendered):
    html, _, _ = rendered
    assert html.count("<svg") >= 2  # loss curve and decode chart at least
    assert "Content-Security-Policy" in html and "default-src 'none'" in unescape(html)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "<link" not in html


def test_everything_that_reaches_html_is_escaped(rendered):
    html, _, _ = rendered
    assert "<script>" not in html and "onerror=alert" not in html.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert html.count("&lt;script&gt;") >= 4  # model name, note, sample text, error message


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture
def three_pages(rendered, run_factory, tmp_path):
    """The run's report, a comparison page and a history page, each a file to open."""
    from bench.report.multi import render_comparison, render_history

    _, _, report = rendered
    slower = [dataclasses.replace(r, run_id="run-2", value=r.value * 1.3 if r.value else r.value,
                                  samples=[s * 1.3 for s in r.samples]) for r in _records()]
    second = run_factory("run-2", slower, baseline=str(REPO / "bench" / "documented" / "tiny-gpt-oss-cpu.toml"),
                         model=f"evil/{HOSTILE}", started=1_760_000_100.0)  # the same group, later
    comparison = render_comparison([report.parent, second], tmp_path / "comparison.html")
    history = render_history(report.parent.parent, tmp_path / "history.html")
    return {"report": report, "comparison": comparison, "history": history}


@pytest.mark.skipif(_chromium() is None, reason="no headless browser installed (apt-get install chromium)")
@pytest.mark.parametrize("page, must_show", [("report", ['<table id="checks">', '<table id="results">', "<svg"]),
                                             ("comparison", ["runs compared", "<svg", "What differs"]),
                                             ("history", ["History of 2 runs", "<svg", 'id="verdicts"'])])
def test_pages_render_in_a_real_headless_browser_without_console_errors(three_pages, page, must_show, tmp_path):
    path = three_pages[page]
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'profile'}"]
    proc = subprocess.run([_chromium(), *flags, "--dump-dom", path.as_uri()], capture_output=True, text=True,
                          timeout=120)
    dom = proc.stdout
    assert all(text in dom for text in must_show), [text for text in must_show if text not in dom]
    assert "<script>" not in dom  # the hostile strings stayed text
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Refused to" in line]
    assert not console, console  # no script error, no Content-Security-Policy violation
    shots = Path(os.environ.get("BENCH_SCREENSHOT_DIR") or tmp_path)  # CI keeps them as artifacts
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / f"{page}.png"
    subprocess.run([_chromium(), *flags, f"--screenshot={shot}", "--window-size=1200,1600", path.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 20_000  # a page with tables and charts, not a blank one


def _engine(record: Measurement, backend: str, scale: float) -> Measurement:
    import dataclasses

    return dataclasses.replace(record, backend=backend, value=record.value * scale,
                               samples=[s * scale for s in record.samples])


@pytest.mark.parametrize("with_infer", [True, False], ids=["train-and-infer", "train-only"])
def test_a_run_with_two_engines_compares_them_case_by_case(run_factory, with_infer):
    base = [make_record("s_per_step", 2.0, samples=[1.98, 2.0, 2.02], lora_r=8, batch_size=2, grad_accum=2),
            make_record("peak_vram_gb", 45.0, lora_r=8, batch_size=2, grad_accum=2, suite="train")]
    if with_infer:
        base.append(make_record("decode_tok_s", 16.0, samples=[15.9, 16.0, 16.1], batch_size=1, effort="low"))
    records = [_engine(r, "hf", 1.0) for r in base] + [_engine(r, "unsloth", 0.5) for r in base]
    run_dir = run_factory("engines", records)
    manifest = (run_dir / "manifest.json").read_text().replace('"backend": "hf"', '"backend": "hf,unsloth"')
    (run_dir / "manifest.json").write_text(manifest)
    html = render_run(run_dir)[0].read_text()
    section = html.split("<h2>unsloth against hf</h2>", 1)[1].split("<h2>", 1)[0]
    step = re.search(r"<tr><td>train</td><td>[^<]*</td><td>s_per_step</td>.*?</tr>", section, re.S).group(0)
    assert ">2 (" in step and "better" in step  # half the step time: twice as fast
    memory = re.search(r"<td>peak_vram_gb</td>.*?</tr>", section, re.S).group(0)
    assert "0.5 (" in memory and ">2 (" in memory  # memory ratio 0.5, two times less
    if with_infer:
        decode = re.search(r"<td>decode_tok_s</td>.*?</tr>", section, re.S).group(0)
        assert "worse" in decode
    assert "hf: lora_r=8" in html and "unsloth: lora_r=8" in html  # every table names the engine


def test_a_run_spread_over_two_gpus_has_a_per_gpu_table_and_compares_only_shared_cases(run_factory):
    import dataclasses

    gpus = [{"index": i, "name": "NVIDIA H100 80GB HBM3", "uuid": f"GPU-{i}", "memory_gb": 85.0, "driver": "580",
             "calibration": {"matmul_tflops": 700.0 + i, "copy_gbps": 2800.0}} for i in (0, 1)]
    spread = [dataclasses.replace(make_record("decode_tok_s", 10.0 * (b + 1), samples=[9.9, 10.0, 10.1],
                                              batch_size=b, effort="low"),
                                  gpu_index=b % 2, gpu_name=gpus[b % 2]["name"], gpu_uuid=f"GPU-{b % 2}")
              for b in (1, 2)]
    html = render_run(run_factory("spread", spread, gpus=gpus))[0].read_text()
    assert '<table id="gpus">' in html and "GPU-1" in html
    assert "against GPU 0" not in html  # the two GPUs ran different cases: nothing to compare
    assert "GPU 1 (H100 80GB HBM3): batch_size=1" in html


def test_the_why_table_says_how_busy_the_rest_of_the_host_was_beside_each_profiled_case(run_factory):
    profiled = {"wall_s": 0.5, "busy_fraction": 0.12, "kernels": 900, "launches": 880, "launches_per_token": 110.0,
                "top": [{"name": "gemv", "ms": 20.0, "share": 0.4, "calls": 100}], "top_of": "kernels"}
    records = [make_record("profiled_round_s", 0.5, extra=profiled, suite="infer", batch_size=1, effort="low"),
               make_record("others_cpu_cores", 1.25, extra={"steal_pct": 0.0, "cores": 16}, suite="infer",
                           batch_size=1, effort="low"),
               make_record("profiled_round_s", 0.4, extra=profiled, suite="infer", batch_size=2, effort="low")]
    one_case = records[0].test_id  # the records of one case share its test id
    records[1] = dataclasses.replace(records[1], test_id=one_case)
    records[2] = dataclasses.replace(records[2], test_id=one_case.replace("[", "[bs2-"))
    html, md = render_run(run_factory("why", records))
    rows = [line for line in md.read_text().splitlines() if "gemv" in line]
    assert len(rows) == 2 and "1.25 cores" in rows[0] and "cores" not in rows[1]  # the second case has no reading
    assert "1.25 cores" in html.read_text()
