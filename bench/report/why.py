"""Why a case runs as fast as it does: the profiled rounds and the load breakdown, as table rows
for the report and summary.md."""

from __future__ import annotations

from bench.analysis.runs import RunData
from bench.analysis.time_budget import TimeBudget, time_budget
from bench.records.metrics import SUITES

TOP_SHOWN = 3


def profile_rows(run: RunData) -> list[dict]:
    """One row per profiled infer or train case: GPU busy share, launches, the top kernels, and the
    CPU the rest of the host used while the case ran (a host-bound case slows beside a busy one)."""
    others = {_case_of(r): r.value for r in run.ok if r.metric == "others_cpu_cores"}
    rows = []
    for r in run.ok:
        if r.metric != "profiled_round_s":
            continue
        x = r.extra
        per = "token" if "launches_per_token" in x else "step"
        rows.append({"suite": r.suite, "case": run.label(r), "wall_s": x.get("wall_s"),
                     "others_cores": others.get(_case_of(r)),
                     "busy_pct": None if x.get("busy_fraction") is None else 100 * x["busy_fraction"],
                     "launches": x.get(f"launches_per_{per}"), "per": per, "top_of": x.get("top_of", "kernels"),
                     "top": [(t["name"], t.get("share")) for t in x.get("top", [])[:TOP_SHOWN]]})
    return rows


def _case_of(r) -> tuple:
    """One case of one engine on one GPU (a run may hold several of each)."""
    return r.test_id, r.backend, r.gpu_index


def load_rows(run: RunData) -> list[dict]:
    """One row per profiled load: its phases, their sum and the timed median beside it."""
    rows = []
    for r in run.ok:
        if r.metric != "load_profiled_s":
            continue
        phases = r.extra.get("phases", {})
        timed = r.extra.get("timed_median_s")
        rows.append({"case": run.label(r), "phases": phases, "sum_s": r.value, "timed_s": timed,
                     "wall_s": r.extra.get("profiled_wall_s"),
                     "ratio": r.value / timed if timed else None})
    return rows


def run_time_budget(run: RunData) -> TimeBudget | None:
    """Where the run's wall time went."""
    return time_budget(run.records, run.manifest.timings, run.manifest.workers, SUITES)
