"""The load generator: streaming chat requests against an endpoint, closed loop (N users, each
sending its next request when its last one finished) or open loop (Poisson arrivals at a set
rate, whatever the server's backlog), timed per token arrival.

It must not be the bottleneck, so it measures itself: the CPU time of the thread that runs it and
how late its event loop wakes up (a loop that is late delays every arrival it timestamps).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import aiohttp
import numpy as np

from bench.analysis.serving import RequestTiming
from bench.serving.endpoint import Endpoint

LAG_TICK_S = 0.005


@dataclass(frozen=True)
class RoundResult:
    timings: list[RequestTiming]
    wall_s: float  # first request sent -> last response finished
    client_cpu_s: float
    loop_lag_ms: list[float]
    offered_rps: float | None = None  # open loop: the arrival rate asked for

    @property
    def client_cpu_pct(self) -> float:
        return 100 * self.client_cpu_s / self.wall_s if self.wall_s else 0.0

    @property
    def lag_p99_ms(self) -> float:
        return float(np.percentile(self.loop_lag_ms, 99)) if self.loop_lag_ms else 0.0


def closed_loop(endpoint: Endpoint, bodies: list[dict], concurrency: int, timeout_s: float) -> RoundResult:
    return asyncio.run(_round(endpoint, bodies, timeout_s, concurrency=concurrency))


def open_loop(endpoint: Endpoint, bodies: list[dict], rate_rps: float, seed: int, timeout_s: float) -> RoundResult:
    """Requests arrive as a Poisson process: exponential gaps of mean 1/rate, seeded."""
    gaps = np.random.default_rng(seed).exponential(1.0 / rate_rps, size=len(bodies))
    arrivals = np.cumsum(gaps) - gaps[0]  # the first request goes at once
    return asyncio.run(_round(endpoint, bodies, timeout_s, arrivals=list(arrivals), rate=rate_rps))


async def _round(endpoint: Endpoint, bodies: list[dict], timeout_s: float, concurrency: int | None = None,
                 arrivals: list[float] | None = None, rate: float | None = None) -> RoundResult:
    lags: list[float] = []
    stop = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
    async with aiohttp.ClientSession(connector=connector, headers=endpoint.headers,
                                     timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout_s)) as session:
        monitor = asyncio.create_task(_watch_lag(stop, lags))
        cpu, started = time.thread_time(), time.perf_counter()
        if arrivals is None:
            timings = await _users(session, endpoint, bodies, concurrency or 1, timeout_s)
        else:
            timings = await _arrivals(session, endpoint, bodies, arrivals, started, timeout_s)
        wall, cpu = time.perf_counter() - started, time.thread_time() - cpu
        stop.set()
        await monitor
    return RoundResult(timings, wall, cpu, lags, rate)


async def _users(session, endpoint: Endpoint, bodies: list[dict], concurrency: int, timeout_s: float):
    queue = list(enumerate(bodies))
    results: list[RequestTiming | None] = [None] * len(bodies)

    async def user() -> None:
        while queue:
            index, body = queue.pop(0)
            results[index] = await _request(session, endpoint, body, timeout_s)

    await asyncio.gather(*(user() for _ in range(min(concurrency, len(bodies)))))
    return results


async def _arrivals(session, endpoint: Endpoint, bodies: list[dict], arrivals: list[float], started: float,
                    timeout_s: float):
    tasks = []
    for body, at in zip(bodies, arrivals):
        delay = started + at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_request(session, endpoint, body, timeout_s)))
    return list(await asyncio.gather(*tasks))


async def _request(session: aiohttp.ClientSession, endpoint: Endpoint, body: dict, timeout_s: float) -> RequestTiming:
    """Send one streaming request and timestamp every server-sent event that carries tokens."""
    sent = time.perf_counter()
    chunks: list[float] = []
    usage_tokens = None
    try:
        async with asyncio.timeout(timeout_s):
            async with session.post(endpoint.chat_url, json=body) as response:
                if response.status != 200:
                    text = (await response.text())[:200].replace("\n", " ")
                    return RequestTiming(None, time.perf_counter() - sent, 0, error=f"HTTP {response.status}: {text}")
                async for raw in response.content:
                    line = raw.strip()
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        break
                    now = time.perf_counter() - sent
                    event = json.loads(data)
                    if isinstance(event.get("usage"), dict):
                        usage_tokens = event["usage"].get("completion_tokens")
                    if any(_has_tokens(choice) for choice in event.get("choices") or ()):
                        chunks.append(now)
    except TimeoutError:
        return RequestTiming(chunks[0] if chunks else None, time.perf_counter() - sent, len(chunks),
                             tuple(chunks), timed_out=True)
    except (aiohttp.ClientError, ValueError, OSError) as exc:
        return RequestTiming(None, time.perf_counter() - sent, 0, error=f"{type(exc).__name__}: {exc}"[:200])
    end = time.perf_counter() - sent
    if not chunks:
        return RequestTiming(None, end, 0, error="the stream ended without a token")
    return RequestTiming(chunks[0], end, int(usage_tokens or len(chunks)), tuple(chunks))


def _has_tokens(choice: dict) -> bool:
    delta = choice.get("delta") or {}
    return bool(delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning"))


async def _watch_lag(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(LAG_TICK_S)
        lags.append(max(0.0, (time.perf_counter() - before - LAG_TICK_S) * 1000))
