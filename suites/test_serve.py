"""Serving under load: an OpenAI-compatible endpoint driven by streaming chat requests at rising
closed-loop concurrency (until throughput stops growing) and at open-loop Poisson rates set from
the sweep's peak. Each load point is one case: TTFT, TPOT, ITL and end-to-end percentiles,
throughput, goodput under the SLOs, errors, and the load generator's own overhead.

Without `--endpoint` the harness starts `transformers serve` for the model under test, without
and with continuous batching, on a free port; its log stays in the run directory.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field

import pytest

from bench.analysis.serving import load_figures, saturated, slo_text
from bench.data import chat_requests
from bench.records.profiles import MIN_OPEN_LOOP_REQUESTS
from bench.serving.client import RoundResult, closed_loop, open_loop
from bench.serving.endpoint import Endpoint
from bench.serving.server import SelfServed

pytestmark = pytest.mark.suite("serve")

SEED = 1234
WARMUP_REQUESTS = 2
REQUEST_TIMEOUT_S = 300.0


@dataclass
class Served:
    """One endpoint for the module, with what the sweep has learnt so far."""

    endpoint: Endpoint
    server: SelfServed | None  # a server the harness started, None for --endpoint
    sweep: list[tuple[int, float, float]] = field(default_factory=list)  # (users, output tok/s, req/s)
    probed_rps: float | None = None  # a Poisson case run without the sweep: its own probe's rate
    first_request_s: float | None = None

    @property
    def peak_rps(self) -> float | None:
        return max((rps for _, _, rps in self.sweep), default=self.probed_rps)

    @property
    def saturated_at(self) -> int | None:
        throughputs = [tok_s for _, tok_s, _ in self.sweep]
        return self.sweep[-1][0] if saturated(throughputs) else None

    def check_alive(self) -> None:
        if self.server is not None and self.server.exit_code is not None:
            pytest.fail(f"the {self.endpoint.name} server is not running (exited with code {self.server.exit_code}: "
                        f"{self.server.last_log_line()}); its log: {self.server.log_path}", pytrace=False)


def _bodies(bench, endpoint: Endpoint, rows, n: int) -> list[dict]:
    """Requests of one round: the bundled conversations, efforts in turn, the same every round."""
    efforts = bench.profile.efforts
    messages = chat_requests(rows, n)
    return [endpoint.chat_body(m, efforts[i % len(efforts)], bench.profile.effort_tokens[efforts[i % len(efforts)]],
                               SEED + i) for i, m in enumerate(messages)]


@pytest.fixture(scope="module")
def served(bench, server, train_data, request):
    rows = train_data.rows
    with contextlib.ExitStack() as stack:
        if bench.endpoints:
            endpoint, process = bench.endpoints[server], None
        else:
            log = bench.start() / "serve-logs" / f"{server}.log"
            weights = bench.prepare_safely(request.getfixturevalue("backend").servable)
            kv_tokens = max(bench.profile.serve_concurrency) * bench.profile.max_seq_length
            process = stack.enter_context(SelfServed(server, weights, bench.device, continuous_batching=server.endswith("-cb"),
                                                     log_path=log, kv_tokens=kv_tokens))
            bench.note_timing(f"serve_start_{server}_s", process.startup_s)
            endpoint = process.endpoint
        started = time.perf_counter()
        warm = closed_loop(endpoint, _bodies(bench, endpoint, rows, WARMUP_REQUESTS), 1, REQUEST_TIMEOUT_S)
        failed = [t.error or "timed out" for t in warm.timings if not t.ok]
        if failed:
            pytest.fail(f"{endpoint.name} ({endpoint.shown}): the warm-up request failed: {failed[0]}", pytrace=False)
        bench.note_timing(f"serve_warmup_{server}_s", time.perf_counter() - started)
        yield Served(endpoint, process, first_request_s=warm.timings[0].e2e_s)


@pytest.fixture(autouse=True)
def _telemetry_of_the_server(bench, served, case):
    """The case's memory figures are the server's (its process, and the GPU's NVML count)."""
    pid = served.server.process.pid if served.server is not None else os.getpid()
    case.watch(pid, bench.gpu.uuid if bench.gpu else None)


def test_serve(bench, served, case, load, train_data):
    served.check_alive()
    endpoint, profile = served.endpoint, bench.profile
    rows = train_data.rows
    rate = None
    if load.kind == "concurrency":
        if served.saturated_at is not None:
            pytest.skip(f"past saturation: c{served.saturated_at} raised output throughput by under 5% over "
                        "the levels before it")
        users = int(load.value)
        n = max(profile.serve_requests, 2 * users)
    else:
        if served.peak_rps is None:  # run without the sweep: a short probe at its top level, untimed
            top = profile.serve_concurrency[-1]
            probe = closed_loop(endpoint, _bodies(bench, endpoint, rows, 2 * top), top, REQUEST_TIMEOUT_S)
            served.probed_rps = sum(t.ok for t in probe.timings) / probe.wall_s
            if not served.probed_rps:
                pytest.fail(f"{endpoint.name}: no request of the rate probe succeeded", pytrace=False)
        rate = load.value * served.peak_rps
        n = max(profile.serve_requests, MIN_OPEN_LOOP_REQUESTS)
    rounds: list[RoundResult] = []
    for index in range(profile.serve_rounds):
        bodies = _bodies(bench, endpoint, rows, n)
        if rate is None:
            rounds.append(closed_loop(endpoint, bodies, users, REQUEST_TIMEOUT_S))
        else:
            rounds.append(open_loop(endpoint, bodies, rate, SEED + index, REQUEST_TIMEOUT_S))
        served.check_alive()
    case.add_timed_work(sum(r.wall_s for r in rounds))
    figures = load_figures([(r.timings, r.wall_s) for r in rounds], bench.slo)
    per_round = figures.rounds
    if not any(r.ok for r in per_round):
        errors = [t.error or "timed out" for r in rounds for t in r.timings if not t.ok]
        pytest.fail(f"{endpoint.name}: every request failed at {load.id}: {errors[0]}", pytrace=False)
    _record(case, figures, rounds, rate)
    if served.first_request_s is not None:
        case("first_request_s", served.first_request_s)
        served.first_request_s = None
    if figures.errors or figures.timeouts:  # measured and written, but not a clean load point
        first = next(t.error or "timed out" for r in rounds for t in r.timings if not t.ok)
        pytest.fail(f"{endpoint.name}: {figures.errors + figures.timeouts} of {figures.requests} requests failed "
                    f"at {load.id} ({first})", pytrace=False)
    if load.kind == "concurrency":
        served.sweep.append((users, min(r.output_tok_s for r in per_round), min(r.request_rps for r in per_round)))


def _record(case, figures, rounds: list[RoundResult], rate: float | None) -> None:
    per_round = figures.rounds
    slo = {"slo": slo_text(figures.slo), "slo_s": figures.slo, "failed": figures.failed_slos}

    def rounds_of(attr: str, scale: float = 1.0) -> list[float]:
        return [getattr(r, attr) * scale for r in per_round if getattr(r, attr) is not None]

    # (median record, its per-round samples, the tails' records): the median over every request,
    # one sample per round for the comparison, the tails as single readings
    latencies = [("ttft_s", figures.ttft_s, 1.0, "ttft_p50_s", {"p90": "ttft_p90_s", "p99": "ttft_p99_s"}),
                 ("tpot_ms", figures.tpot_s, 1000.0, "tpot_p50_s", {"p90": "tpot_p90_ms", "p99": "tpot_p99_ms"}),
                 ("itl_p50_ms", figures.itl_s, 1000.0, "itl_p50_s", {"p90": "itl_p90_ms", "p99": "itl_p99_ms"}),
                 ("e2e_s", figures.e2e_s, 1.0, "e2e_p50_s", {"p99": "e2e_p99_s"})]
    for metric, table, scale, round_attr, tails in latencies:
        if not table:
            continue
        case(metric, table["p50"] * scale, samples=rounds_of(round_attr, scale),
             extra={k: v * scale for k, v in table.items()})
        for tail, tail_metric in tails.items():
            case(tail_metric, table[tail] * scale)
    case.timed("output_tok_s", [r.output_tok_s for r in per_round],
               extra={"output_tokens": [r.output_tokens for r in per_round], "wall_s": [r.wall_s for r in per_round]})
    case.timed("request_rps", [r.request_rps for r in per_round])
    case.timed("goodput_rps", [r.goodput_rps for r in per_round], extra=slo)
    if rate is not None:
        case("offered_rps", rate)
    case("slo_met", 1.0 if figures.slo_met else 0.0, extra=slo)
    case("error_rate", figures.error_rate,
         extra={"errors": sorted({t.error for r in rounds for t in r.timings if t.error})[:5]})
    case("timeout_rate", figures.timeout_rate)
    case.timed("client_cpu_pct", [r.client_cpu_pct for r in rounds])
    case("client_lag_p99_ms", max(r.lag_p99_ms for r in rounds))
