"""Cross-check of the serving suite's load generator against an independent client.

The same self-started `transformers serve` (tiny model, continuous batching), the same requests,
the same concurrency; three clients take turns, so that drift cancels: the harness's (aiohttp,
asyncio), a plain one on the standard library (http.client, one thread per user) and the
official `openai` Python client (httpx and pydantic, one thread per user). Printed: median TTFT
and output tokens/s of each, and the harness's figures over each other client's.

    BENCH_CACHE_DIR=... python reports/examples/cpu-serve-tiny/crosscheck.py
"""

import http.client
import json
import statistics
import sys
import urllib.parse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai

from bench.data import chat_requests, load_training_dataset
from bench.models import local_weights, resolve_model
from bench.serving.client import closed_loop
from bench.serving.server import SelfServed

TURNS, REQUESTS = 10, 16


def stdlib(endpoint, bodies, users):
    url = urllib.parse.urlsplit(endpoint.base_url)

    def one(body):
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=300)
        sent = time.perf_counter()
        connection.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        first, tokens = None, 0
        for line in response:
            if not line.startswith(b"data:") or line.strip() == b"data: [DONE]":
                continue
            event = json.loads(line[5:])
            if first is None and any((c.get("delta") or {}).get("content") for c in event.get("choices") or ()):
                first = time.perf_counter() - sent
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
        connection.close()
        return first, tokens

    return _threads(one, bodies, users)


def _threads(one, bodies, users):
    started = time.perf_counter()
    with ThreadPoolExecutor(users) as pool:
        results = list(pool.map(one, bodies))
    wall = time.perf_counter() - started
    return statistics.median(f for f, _ in results), sum(t for _, t in results) / wall


def official(endpoint, bodies, users):
    client = openai.OpenAI(base_url=f"{endpoint.base_url}/v1", api_key="none")

    def one(body):
        sent = time.perf_counter()
        first, tokens = None, 0
        extra = {k: body[k] for k in ("chat_template_kwargs", "generation_config")}
        stream = client.chat.completions.create(model=body["model"], messages=body["messages"], stream=True,
                                                stream_options={"include_usage": True}, temperature=0.0,
                                                seed=body["seed"], extra_body=extra)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content and first is None:
                first = time.perf_counter() - sent
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
        return first, tokens

    return _threads(one, bodies, users)


def harness(endpoint, bodies, users):
    result = closed_loop(endpoint, bodies, users, 300)
    return (statistics.median(t.ttft_s for t in result.timings),
            sum(t.output_tokens for t in result.timings) / result.wall_s)


def main():
    model = local_weights(resolve_model("tiny-gpt-oss"), "cpu")
    rows = load_training_dataset("builtin")
    log = Path(tempfile.mkdtemp()) / "server.log"
    with SelfServed("transformers-cb", model, "cpu", True, log) as server:
        endpoint = server.endpoint
        efforts, budget = ("low", "medium", "high"), {"low": 16, "medium": 32, "high": 64}
        bodies = [endpoint.chat_body(m, efforts[i % 3], budget[efforts[i % 3]], i)
                  for i, m in enumerate(chat_requests(rows, REQUESTS))]
        harness(endpoint, bodies[:2], 1)  # warm-up, not counted
        print(f"{'users':>5} {'client':>9} {'TTFT p50 (ms)':>14} {'output tok/s':>13}")
        for users in (1, 4):
            clients = {"harness": harness, "stdlib": stdlib, "openai": official}
            figures = {name: [] for name in clients}
            for _ in range(TURNS):
                for name, client in clients.items():
                    figures[name].append(client(endpoint, bodies, users))
            medians = {name: (statistics.median(r[0] for r in rows_), statistics.median(r[1] for r in rows_))
                       for name, rows_ in figures.items()}
            for name, (ttft, tok_s) in medians.items():
                print(f"{users:>5} {name:>9} {1000 * ttft:>14.2f} {tok_s:>13.1f}")
            for name in ("stdlib", "openai"):
                print(f"{users:>5} {'/' + name:>9} {medians['harness'][0] / medians[name][0]:>14.3f} "
                      f"{medians['harness'][1] / medians[name][1]:>13.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
