"""A stand-in OpenAI-compatible server for the serving suite's tests: streams a fixed number of
tokens at a set pace, can demand an API key, answer like a server that is not OpenAI's, and die
after a number of requests (a server crashing mid-run).

    python tests/fake_openai.py PORT [--tokens N] [--gap-ms G] [--die-after K] [--not-openai]
"""

import argparse
import asyncio
import json
import os

from aiohttp import web


def app(tokens: int, gap_s: float, die_after: int | None, not_openai: bool, key: str | None) -> web.Application:
    served = {"requests": 0}

    def authorized(request: web.Request) -> bool:
        return key is None or request.headers.get("Authorization") == f"Bearer {key}"

    async def models(request: web.Request) -> web.Response:
        if not_openai:
            return web.Response(text="<html>hello</html>", content_type="text/html")
        if not authorized(request):
            return web.json_response({"error": "no key"}, status=401)
        return web.json_response({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    async def chat(request: web.Request) -> web.StreamResponse:
        if not authorized(request):
            return web.json_response({"error": "no key"}, status=401)
        served["requests"] += 1
        if die_after is not None and served["requests"] > die_after:
            os._exit(3)
        body = await request.json()
        count = min(tokens, int(body.get("max_tokens") or tokens))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await asyncio.sleep(gap_s)  # prefill
        for i in range(count):
            chunk = {"choices": [{"index": 0, "delta": {"content": f"t{i} "}}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await asyncio.sleep(gap_s)
        usage = {"choices": [], "usage": {"completion_tokens": count, "prompt_tokens": 5}}
        await response.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
        return response

    application = web.Application()
    application.add_routes([web.get("/v1/models", models), web.post("/v1/chat/completions", chat)])
    return application


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--gap-ms", type=float, default=2.0)
    parser.add_argument("--die-after", type=int, default=None)
    parser.add_argument("--not-openai", action="store_true")
    args = parser.parse_args()
    web.run_app(app(args.tokens, args.gap_ms / 1000, args.die_after, args.not_openai, os.environ.get("FAKE_KEY")),
                host="127.0.0.1", port=args.port, print=None)
