"""Serving figures of one load point, pure: per-request timings in, latency percentiles,
throughput, goodput under service-level objectives and the saturation point out. No I/O.

Definitions follow `vllm bench serve`, so that numbers can be set side by side:
- TTFT: request sent -> first streamed token (queueing, prefill and the HTTP round trip included);
- TPOT: (end-to-end - TTFT) / (output tokens - 1), per request;
- ITL: the gaps between successive streamed chunks that carry tokens;
- goodput: completed requests per second that met every SLO (TTFT and TPOT);
- a load point meets the SLOs when its p99 TTFT and p99 TPOT are within them and no request failed;
  the saturation point is the highest load that still does.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field

import numpy as np

from bench.errors import BenchError

# The default objectives: 2 s to the first token (an interactive chat), 100 ms per output token
# (10 tok/s, faster than people read). `--slo` or a baseline's [slo] table replaces them.
DEFAULT_SLO = {"ttft": 2.0, "tpot": 0.1}
SLO_NAMES = {"ttft": "time to first token", "tpot": "time per output token", "e2e": "end-to-end latency"}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s)?\s*$")


@dataclass(frozen=True)
class RequestTiming:
    """One request as the client saw it. Times are seconds from the request being sent."""

    ttft_s: float | None  # None: no token arrived
    e2e_s: float
    output_tokens: int
    chunk_times_s: tuple[float, ...] = ()  # arrival of every chunk that carried tokens
    error: str | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out and self.ttft_s is not None

    @property
    def tpot_s(self) -> float | None:
        if not self.ok or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)

    @property
    def itl_s(self) -> list[float]:
        return [b - a for a, b in zip(self.chunk_times_s, self.chunk_times_s[1:])]


@dataclass(frozen=True)
class RoundFigures:
    """One round of a load point: the figures a comparison takes one sample of per round."""

    requests: int
    ok: int
    wall_s: float
    output_tokens: int
    ttft_p50_s: float | None
    tpot_p50_s: float | None
    itl_p50_s: float | None
    e2e_p50_s: float | None
    good: int  # requests that met every SLO

    @property
    def request_rps(self) -> float:
        return self.ok / self.wall_s

    @property
    def output_tok_s(self) -> float:
        return self.output_tokens / self.wall_s

    @property
    def goodput_rps(self) -> float:
        return self.good / self.wall_s


@dataclass(frozen=True)
class LoadFigures:
    """A whole load point: its rounds and the percentiles over every request of all of them."""

    rounds: list[RoundFigures]
    ttft_s: dict[str, float]  # p50, p90, p99
    tpot_s: dict[str, float]
    itl_s: dict[str, float]
    e2e_s: dict[str, float]
    requests: int
    errors: int
    timeouts: int
    slo: dict[str, float]
    slo_met: bool
    failed_slos: list[str] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else math.nan

    @property
    def timeout_rate(self) -> float:
        return self.timeouts / self.requests if self.requests else math.nan


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    p50, p90, p99 = np.percentile(np.asarray(values, dtype=float), [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99)}


def meets(timing: RequestTiming, slo: dict[str, float]) -> bool:
    """Whether one request met every objective (a request with one token has no TPOT to miss)."""
    if not timing.ok:
        return False
    if "ttft" in slo and timing.ttft_s > slo["ttft"]:
        return False
    if "tpot" in slo and timing.tpot_s is not None and timing.tpot_s > slo["tpot"]:
        return False
    return not ("e2e" in slo and timing.e2e_s > slo["e2e"])


def round_figures(timings: list[RequestTiming], wall_s: float, slo: dict[str, float]) -> RoundFigures:
    ok = [t for t in timings if t.ok]

    def median(values: list[float]) -> float | None:
        return float(np.median(values)) if values else None

    return RoundFigures(
        requests=len(timings), ok=len(ok), wall_s=wall_s, output_tokens=sum(t.output_tokens for t in ok),
        ttft_p50_s=median([t.ttft_s for t in ok]), tpot_p50_s=median([t.tpot_s for t in ok if t.tpot_s is not None]),
        itl_p50_s=median([gap for t in ok for gap in t.itl_s]), e2e_p50_s=median([t.e2e_s for t in ok]),
        good=sum(meets(t, slo) for t in ok))


def load_figures(rounds: list[tuple[list[RequestTiming], float]], slo: dict[str, float]) -> LoadFigures:
    """Figures of a load point from its rounds: (the round's requests, the round's wall time)."""
    every = [t for timings, _ in rounds for t in timings]
    ok = [t for t in every if t.ok]
    figures = LoadFigures(
        rounds=[round_figures(timings, wall, slo) for timings, wall in rounds],
        ttft_s=percentiles([t.ttft_s for t in ok]),
        tpot_s=percentiles([t.tpot_s for t in ok if t.tpot_s is not None]),
        itl_s=percentiles([gap for t in ok for gap in t.itl_s]),
        e2e_s=percentiles([t.e2e_s for t in ok]),
        requests=len(every), errors=sum(t.error is not None for t in every),
        timeouts=sum(t.timed_out for t in every), slo=dict(slo), slo_met=False)
    failed = [name for name, limit in slo.items() if _p99(figures, name) is None or _p99(figures, name) > limit]
    if figures.errors or figures.timeouts:
        failed.append("errors")
    return dataclasses.replace(figures, slo_met=not failed, failed_slos=failed)


def _p99(figures: LoadFigures, name: str) -> float | None:
    table = {"ttft": figures.ttft_s, "tpot": figures.tpot_s, "e2e": figures.e2e_s}[name]
    return table.get("p99")


def parse_slo(text: str) -> dict[str, float]:
    """'ttft=2s,tpot=100ms' -> {'ttft': 2.0, 'tpot': 0.1} (seconds)."""
    slo: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        name = name.strip().lower()
        if name not in SLO_NAMES:
            raise BenchError(f"--slo {text}: unknown objective '{name}'; use {', '.join(SLO_NAMES)} "
                             "(e.g. --slo ttft=2s,tpot=100ms)")
        slo[name] = parse_duration(value, f"--slo {text}")
    if not slo:
        raise BenchError(f"--slo {text}: give at least one objective, e.g. --slo ttft=2s,tpot=100ms")
    return slo


def parse_duration(value: str | float, what: str) -> float:
    """'100ms' -> 0.1, '2s' or '2' or 2 -> 2.0 (seconds)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise BenchError(f"{what}: '{value}' is not a duration; write it like 2s or 100ms")
        seconds = float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)
    if seconds <= 0:
        raise BenchError(f"{what}: '{value}' must be positive")
    return seconds


def slo_text(slo: dict[str, float]) -> str:
    return ", ".join(f"{name} {_duration_text(seconds)}" for name, seconds in slo.items())


def _duration_text(seconds: float) -> str:
    return f"{seconds * 1000:g} ms" if seconds < 1 else f"{seconds:g} s"


def saturated(throughputs: list[float], gain: float = 0.05) -> bool:
    """Whether a closed-loop sweep has stopped gaining: the last concurrency level raised output
    throughput by less than `gain` over the best before it (more users only wait longer)."""
    if len(throughputs) < 2:
        return False
    return throughputs[-1] < max(throughputs[:-1]) * (1 + gain)


def saturation_point(points: list[tuple[float, bool]]) -> float | None:
    """The highest load (concurrency or request rate) whose p99 met the SLOs: (load, met) pairs."""
    met = [load for load, ok in points if ok]
    return max(met) if met else None
