"""Within one run, each lane against the first: unsloth against hf (`--backend hf,unsloth`), or each
GPU against the first (`--each-gpu`). The same comparison as between two runs, with its confidence
intervals, read as "how many times better" per case: the speedup and the memory ratio Unsloth
publishes, measured here."""

from __future__ import annotations

from bench.analysis.compare import Rules, compare
from bench.analysis.stats import DEFAULT_THRESHOLD
from bench.records.metrics import SUITES, named
from bench.report.comparison import change_row, ratio_figures
from bench.analysis.runs import RunData
from bench.records.results import describe_params

READING = {"regression": "worse", "improvement": "better", "unchanged": "the same within the threshold",
           "inconclusive": "inconclusive"}


def lane_sections(run: RunData) -> list[dict]:
    lanes = run.lanes
    if len(lanes) < 2:
        return []
    reference = [r for r in run.records if run.lane(r) == lanes[0]]
    sections = []
    shown = named("charted")
    rules = Rules.of(DEFAULT_THRESHOLD, run.baseline)
    for lane in lanes[1:]:
        result = compare(reference, [r for r in run.records if run.lane(r) == lane], rules, by_lane=False)
        changes = sorted((c for c in result.changes if c.metric in shown),
                         key=lambda c: (SUITES.index(c.suite), shown.index(c.metric), describe_params(c.params)))
        rows = []
        for c in changes:
            est, lower = c.estimate, c.better == "lower"
            # times better: base/new where lower is better (a speedup, a memory saving), new/base where higher is
            rows.append({**change_row(c), "verdict": READING[c.verdict], "better_x": 1 / est.ratio if lower else est.ratio,
                         "better_low": 1 / c.high if lower else c.low,
                         "better_high": 1 / c.low if lower else c.high})
        figures = ratio_figures(changes, shown, lambda metric: f"{metric}: {lane} / {lanes[0]}")
        if rows:  # lanes that shared no case (GPUs that split the cases between them) have nothing to compare
            sections.append({"lane": lane, "reference": lanes[0], "rows": rows, "figures": figures})
    return sections


def gpu_rows(run: RunData) -> list[dict]:
    """One row per GPU of a multi-GPU run: what it is, its ceilings, what ran on it."""
    if len(run.manifest.gpus) < 2:
        return []
    rows = []
    for gpu in run.manifest.gpus:
        mine = [r for r in run.records if r.gpu_uuid == gpu.get("uuid")]
        rows.append({"index": gpu.get("index"), "name": gpu.get("name"), "uuid": gpu.get("uuid"),
                     "calibration": gpu.get("calibration") or {}, "cases": len({r.test_id for r in mine}),
                     "workers": ", ".join(w["worker"] for w in run.manifest.workers
                                          if (w.get("gpu") or {}).get("uuid") == gpu.get("uuid")),
                     "energy_kj": sum(r.extra["usage"].get("energy_j") or 0 for r in mine
                                      if isinstance(r.extra.get("usage"), dict)) / 1000})
    return rows
