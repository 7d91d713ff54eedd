"""The serving section of a report: one row per load point of each server (and lane), the
saturation point under the run's SLOs, and the latency-throughput curves."""

from __future__ import annotations

from bench.analysis.runs import RunData
from bench.analysis.serving import saturation_point

# what a load point's row shows: record metric -> row key
ROW_METRICS = {"output_tok_s": "output_tok_s", "request_rps": "request_rps", "goodput_rps": "goodput_rps",
               "offered_rps": "offered_rps", "ttft_s": "ttft_p50_s", "ttft_p99_s": "ttft_p99_s",
               "tpot_ms": "tpot_p50_ms", "tpot_p99_ms": "tpot_p99_ms", "itl_p50_ms": "itl_p50_ms",
               "e2e_s": "e2e_p50_s", "slo_met": "slo_met", "error_rate": "error_rate",
               "client_cpu_pct": "client_cpu_pct", "client_lag_p99_ms": "client_lag_p99_ms"}


def server_of(run: RunData, record) -> str:
    """The server a record measured, after its lane where a run has several (two GPUs)."""
    return f"{run.lane(record)} {record.params['server']}".strip()


def load_points(run: RunData) -> list[dict]:
    """Rows in sweep order: each server's concurrency levels, then its Poisson rates."""
    rows: dict[tuple, dict] = {}
    for r in run.ok:
        if r.suite != "serve" or r.metric not in ROW_METRICS:
            continue
        params = r.params
        kind = "concurrency" if "concurrency" in params else "poisson"
        load = params.get("concurrency", params.get("request_rate"))
        key = (server_of(run, r), kind, load)
        row = rows.setdefault(key, {"server": key[0], "kind": kind, "load": f"c{load}" if kind == "concurrency"
                                    else f"Poisson {load} of peak", "order": _order(kind, load)})
        row[ROW_METRICS[r.metric]] = r.value
        if r.metric == "slo_met":
            row["slo"] = r.extra.get("slo", "")
            row["slo_s"] = r.extra.get("slo_s", {})
            row["failed"] = r.extra.get("failed", [])
    return sorted(rows.values(), key=lambda row: (row["server"], row["order"]))


def _order(kind: str, load) -> tuple:
    value = float(str(load).rstrip("x"))
    return (0 if kind == "concurrency" else 1, value)


def saturation(points: list[dict]) -> list[dict]:
    """Per server: the highest concurrency whose p99 met the SLOs, and the throughput there."""
    out = []
    for server in dict.fromkeys(p["server"] for p in points):
        sweep = [p for p in points if p["server"] == server and p["kind"] == "concurrency" and "slo_met" in p]
        level = saturation_point([(p["order"][1], bool(p["slo_met"])) for p in sweep])
        at = next((p for p in sweep if p["order"][1] == level), None)
        peak = max((p.get("output_tok_s") or 0 for p in sweep), default=None)
        out.append({"server": server, "concurrency": None if level is None else int(level),
                    "at_top": level is not None and level == max(p["order"][1] for p in sweep),
                    "output_tok_s": at.get("output_tok_s") if at else None, "peak_output_tok_s": peak,
                    "slo": next((p.get("slo") for p in sweep if p.get("slo")), "")})
    return out


def slo_of(points: list[dict]) -> dict[str, float]:
    return next((p["slo_s"] for p in points if p.get("slo_s")), {})
