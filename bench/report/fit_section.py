"""The report's "will it fit" section: the memory model fitted to the run's training cases, each
case predicted without itself (leave one out: an honest held-out error for every point), the
fitted terms, a chart of the fitted peak against tokens per micro-batch by rank with the measured
points, and the largest batch per rank and length on common GPU sizes; and its serving part, the
inference model of the run's generation cases, with the largest batch per context."""

from __future__ import annotations

from markupsafe import Markup

from bench.analysis.inference_memory import CONTEXTS, fit_inference, infer_points_of
from bench.analysis.memory_model import MIN_POINTS, TABLE_SIZES_GB, fit, points_of
from bench.analysis.runs import RunData
from bench.errors import BenchError
from bench.report import charts

RANKS = (8, 16, 32, 64)
LENGTHS = (512, 1024, 2048, 4096)


def fit_section(run: RunData) -> dict | None:
    points = points_of(run.records)
    try:
        model = fit(points)
    except BenchError:  # too few points or axes for a model: no section
        return None
    rows = []
    for i, point in enumerate(points):
        others = points[:i] + points[i + 1:]
        try:
            without = fit(others) if len(others) >= MIN_POINTS else None
        except BenchError:
            without = None
        p = (without or model).predict(point.lora_r, point.batch_size, point.tokens / point.batch_size)
        rows.append({"point": point.label.split(": ", 1)[-1], "measured": point.peak_gb, "predicted": p.peak_gb,
                     "low": p.low, "high": p.high, "error_pct": (p.peak_gb / point.peak_gb - 1) * 100,
                     "held_out": without is not None})
    svg = charts.memory_fit([(p.lora_r, p.tokens, p.peak_gb) for p in points],
                            lambda r, tokens: model.predict(r, 1, tokens).peak_gb, RANKS)
    return {"terms": model.describe(), "rows": rows, "chart": Markup(svg), "sizes": TABLE_SIZES_GB,
            "table": [{"rank": r, "seq": s, "batches": [model.largest_batch(r, s, gb) for gb in TABLE_SIZES_GB]}
                      for r in RANKS for s in LENGTHS]}


def serve_section(run: RunData) -> dict | None:
    from bench.report.efficiency_table import model_shape

    points = infer_points_of(run.records)
    one_engine = len({r.backend for r in run.records if r.suite == "infer"}) == 1  # engines differ in memory
    shape = model_shape(run.manifest.model) if points and one_engine else None
    if shape is None:
        return None
    try:
        model = fit_inference(points, shape)
    except BenchError:  # too few generation cases or sizes
        return None
    return {"terms": model.describe(), "reach": max(p.context for p in points), "sizes": TABLE_SIZES_GB,
            "table": [{"context": c, "batches": [model.largest_batch_text(c, gb) for gb in TABLE_SIZES_GB]}
                      for c in CONTEXTS]}
