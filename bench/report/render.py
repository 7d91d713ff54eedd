"""Turn a run directory into report.html and summary.md (and the terminal table)."""

from __future__ import annotations

from pathlib import Path

from markupsafe import Markup

from bench.records.profiles import get_profile
from bench.records.metrics import METRICS
from bench.analysis.channels import split_channels
from bench.report import charts
from bench.report.page import CSP, environment
from bench.analysis.runs import RunData, checks_table, load_run, loss_curves, results_frame

def _references(run: RunData, metric: str, x: str, suite: str) -> dict[float, float] | None:
    if run.baseline is None:
        return None
    refs = [r for r in run.baseline.references if r.metric == metric and x in r.where
            and r.where.get("suite", suite) == suite]
    return {float(r.where[x]): r.value for r in refs} or None


def _by_lane(frame, series: str):
    """Chart series split by lane where a run has several (hf and unsloth, two GPUs)."""
    if frame.empty or frame["lane"].nunique() < 2 or f"p_{series}" not in frame:
        return frame
    frame = frame.copy()
    frame[f"p_{series}"] = frame["lane"] + " " + frame[f"p_{series}"].astype(str)
    return frame


def charts_for(run: RunData, frame) -> list[tuple[str, Markup]]:
    """`frame`: the run's `results_frame`, built once per report."""
    out = []
    specs = [
        ("Training loss", charts.loss_curves(loss_curves(run))),
        ("Decode tokens/s (all sequences) by batch size and effort",
         charts.metric_by(_by_lane(frame, "effort"), "decode_tok_s", "batch_size", "effort", "tok/s",
                          _references(run, "decode_tok_s", "batch_size", "infer"))),
        ("Time to first token by batch size",
         charts.metric_by(_by_lane(frame[frame["suite"] == "infer"] if not frame.empty else frame, "effort"),
                          "ttft_s", "batch_size", "effort", "s")),
        ("Training peak memory by LoRA rank",
         charts.metric_by(_by_lane(frame[frame["suite"] == "train"] if not frame.empty else frame, "batch_size"),
                          "peak_vram_gb" if (not frame.empty and (frame["metric"] == "peak_vram_gb").any())
                          else "peak_rss_gb", "lora_r", "batch_size", "GB")),
        ("Seconds per optimizer step by LoRA rank", charts.metric_by(_by_lane(frame, "batch_size"), "s_per_step", "lora_r", "batch_size", "s")),
    ]
    for title, svg in specs:
        if svg:
            out.append((title, Markup(svg)))  # made by matplotlib from numbers, not from user text
    return out


def problem_rows(run: RunData) -> list[dict]:
    """Cases not measured, one row per (suite, metric, status, reason) listing every case it hit,
    so thirty "skipped: random weights" lines read as one."""
    groups: dict[tuple, list[str]] = {}
    for r in run.problems:
        key = (r.suite, r.metric, r.status, r.error or "")
        groups.setdefault(key, []).append(run.label(r) if r.params else r.test_id.rsplit("::", 1)[-1])
    return [{"suite": suite, "metric": metric, "status": status, "error": error, "case": "; ".join(cases)}
            for (suite, metric, status, error), cases in groups.items()]


def unmeasured(run: RunData) -> dict[str, int]:
    """Whole cases that produced no measurement, apart from single metrics a measured case skipped
    (a replica's loss): one count for both read as three unmeasured cases where one was."""
    whole = {(r.test_id, r.gpu_uuid, r.backend) for r in run.problems if r.metric == "case"}
    return {"cases": len(whole), "metrics": sum(1 for r in run.problems if r.metric != "case")}


def context(run: RunData) -> dict:
    from bench.report.efficiency_table import efficiency_rows, run_energy
    from bench.report.fidelity_table import context_rows, fidelity_headline, fidelity_rows, instrument_rows
    from bench.report.fit_section import fit_section, serve_section
    from bench.report.lanes import gpu_rows, lane_sections
    from bench.report.serving import load_points, saturation, slo_of
    from bench.report.why import load_rows, profile_rows, run_time_budget

    frame = results_frame(run)
    checks = checks_table(run)
    price = run.manifest.gpu_price_per_hour
    efficiency, points = efficiency_rows(run, price)
    cal = run.manifest.calibration
    roof = charts.roofline(points, cal["matmul_tflops"], cal["copy_gbps"]) if points and cal else None
    serve_points = load_points(run)
    curve = charts.latency_throughput(serve_points, slo_of(serve_points))
    fidelity = fidelity_rows(run.records)
    return {
        "fidelity": fidelity, "fidelity_headline": fidelity_headline(fidelity),
        "fidelity_instruments": instrument_rows(fidelity),
        "fidelity_context": context_rows(fidelity), "fit": fit_section(run), "serve_fit": serve_section(run),
        "lanes": lane_sections(run), "gpu_rows": gpu_rows(run), "run_energy": run_energy(run, price),
        "train_steps": get_profile(run.manifest.profile).train_steps,
        "efficiency": efficiency, "roofline": Markup(roof) if roof else None,
        "run": run, "m": run.manifest, "csp": CSP, "checks": checks,
        "checks_failed": sum(1 for c in checks if c["passed"] is False),
        "checks_passed": sum(1 for c in checks if c["passed"] is True),
        "results": frame.to_dict("records") if not frame.empty else [],
        "problems": problem_rows(run), "unmeasured": unmeasured(run),
        "why_profiles": profile_rows(run), "why_loads": load_rows(run), "budget": run_time_budget(run),
        "charts": charts_for(run, frame), "metrics": METRICS,
        "serve_points": serve_points, "serve_saturation": saturation(serve_points),
        "serve_curve": Markup(curve) if curve else None,  # matplotlib's, from numbers
        "samples": [{"case": run.label(r), "text": r.extra.get("sample", ""), "parts": split_channels(r.extra.get("sample", "")),
                     "channels": r.extra.get("channels")} for r in run.ok if r.metric == "decode_tok_s"][:6],
    }


def render_run(run_dir: Path) -> tuple[Path, Path]:
    run = load_run(run_dir)
    ctx = context(run)
    env = environment()
    html = Path(run_dir) / "report.html"
    md = Path(run_dir) / "summary.md"
    html.write_text(env.get_template("report.html.j2").render(ctx), encoding="utf-8")
    md.write_text(env.get_template("summary.md.j2").render(ctx), encoding="utf-8")
    return html, md
