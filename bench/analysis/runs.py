"""What a report shows, prepared from a run on disk: records as tables, check outcomes, references."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.analysis.baselines import Baseline, CheckOutcome, evaluate, load_baseline
from bench.errors import BenchError
from bench.records.results import Measurement, RunManifest, describe_params, read_results
from bench.analysis.stats import summarize


@dataclass
class RunData:
    run_dir: Path
    manifest: RunManifest
    records: list[Measurement]
    baseline: Baseline | None
    checked: list[tuple[Measurement, CheckOutcome]] = field(default_factory=list)  # each check, with its record

    @property
    def ok(self) -> list[Measurement]:
        return [r for r in self.records if r.status == "ok" and r.value is not None]

    @property
    def problems(self) -> list[Measurement]:
        return [r for r in self.records if r.status != "ok"]

    @property
    def lanes(self) -> list[str]:
        """What measured each case where a run holds several (engines, or GPUs with --each-gpu or
        per-GPU workers); one lane for an ordinary run."""
        return sorted({lane_of(r, self._lane_by) for r in self.records}, key=self._lane_order)

    @functools.cached_property
    def _lane_by(self) -> str | None:
        return lane_by(self.records)

    def _lane_order(self, lane: str) -> tuple:
        order = self.manifest.backend.split(",")  # hf,unsloth: the first engine named is the reference
        return (order.index(lane) if lane in order else len(order), lane)

    def lane(self, r: Measurement) -> str:
        return lane_of(r, self._lane_by)

    def label(self, r: Measurement) -> str:
        """A case as the report names it: its parameters, after its lane when there are several."""
        case = describe_params(r.params) or r.test_id.rsplit("::", 1)[-1]  # a case without parameters: its test
        return f"{self.lane(r)}: {case}" if self._lane_by else case


def load_run(run_dir: Path) -> RunData:
    run_dir = Path(run_dir)
    manifest = RunManifest.read(run_dir)
    records = read_results(run_dir)
    baseline = None
    if manifest.baseline:
        try:  # the file the run used, else the bundled baseline of that name (a run made elsewhere)
            baseline = load_baseline(manifest.baseline if Path(manifest.baseline).is_file()
                                     else Path(manifest.baseline).stem)
        except BenchError:
            baseline = None  # deleted since the run: the report shows no checks
    checked = [(r, o) for r in records for o in evaluate(baseline, r.__dict__)]
    return RunData(run_dir, manifest, records, baseline, checked)


def lane_by(records: list[Measurement]) -> str | None:
    """What tells a run's lanes apart: the engine where there are several, else the GPU."""
    if len({r.backend for r in records}) > 1:
        return "backend"
    if len({r.gpu_uuid for r in records if r.gpu_uuid}) > 1:
        return "gpu"
    return None


def lane_of(r: Measurement, by: str | None) -> str:
    if by == "backend":
        return r.backend
    if by == "gpu":
        return f"GPU {r.gpu_index} ({(r.gpu_name or '').replace('NVIDIA ', '')})"
    return ""


def results_frame(run: RunData) -> pd.DataFrame:
    """One row per measurement: suite, case, metric, median, spread, documented reference."""
    rows = []
    for r in run.ok:
        spread = summarize(r.samples) if len(r.samples) > 1 else None
        refs = run.baseline.references_for(r.__dict__) if run.baseline else []
        rows.append({
            "suite": r.suite, "case": run.label(r), "lane": run.lane(r), "metric": r.metric, "value": r.value,
            "unit": r.unit, "n": len(r.samples) or 1,
            "cv_pct": 100 * spread.cv if spread else None,
            "min": spread.min if spread else None, "max": spread.max if spread else None,
            "reference": refs[0].value if refs else None, "reference_note": refs[0].note if refs else "",
            **{f"p_{k}": v for k, v in r.params.items()},
        })
    return pd.DataFrame(rows)


def checks_table(run: RunData) -> list[dict]:
    rows = []
    for r, o in run.checked:
        refs = run.baseline.references_for(r.__dict__) if run.baseline else []
        rows.append({"check": o.check.describe(), "case": run.label(r), "value": o.value,
                     "unit": o.unit, "reference": refs[0].value if refs else None, "passed": o.passed,
                     "message": o.message})
    if run.baseline:
        matched = {id(o.check) for _, o in run.checked}
        for check in run.baseline.checks:
            if id(check) not in matched:
                skipped = [r for r in run.problems if r.metric == check.metric and r.status == "skipped"]
                why = f"skipped: {skipped[0].error}" if skipped else "no measurement in this run"
                rows.append({"check": check.describe(), "case": "", "value": None, "unit": "", "reference": None,
                             "passed": None, "message": why})
    return rows


def loss_curves(run: RunData) -> dict[str, list[tuple[int, float]]]:
    return {run.label(r): r.extra["loss_curve"] for r in run.ok
            if r.metric == "s_per_step" and r.extra.get("loss_curve")}
