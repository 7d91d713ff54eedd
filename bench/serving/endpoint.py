"""Where requests go: an OpenAI-compatible base URL, the model it serves, the API key (read from
the environment, never written anywhere), and how a chat request is phrased for it."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from bench.errors import BenchError

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
PROBE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Endpoint:
    name: str  # the `server` parameter of the records: stable from run to run
    base_url: str  # scheme://host:port[/prefix], without /v1
    model: str
    api_key: str | None = field(default=None, repr=False)
    # "transformers": a server the harness started, which takes the chat template's arguments and
    # a generation config (fixed-length outputs); "openai": only what the OpenAI API defines.
    dialect: str = "openai"

    @property
    def chat_url(self) -> str:
        return f"{self.base_url}/v1/chat/completions"

    @property
    def shown(self) -> str:
        """The URL as records and reports show it: no user, password or query string."""
        return display_url(self.base_url)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def chat_body(self, messages: list[dict], effort: str, max_tokens: int, seed: int) -> dict:
        """One streaming chat request. The reasoning effort goes where the server reads it: the
        chat template's argument for `transformers serve` (which ignores the OpenAI field), the
        OpenAI `reasoning_effort` field elsewhere (vLLM, SGLang, the OpenAI API)."""
        body = {"model": self.model, "messages": messages, "stream": True,
                "stream_options": {"include_usage": True}, "temperature": 0.0, "seed": seed}
        if self.dialect == "transformers":
            # every request decodes exactly max_tokens, so that rounds and runs compare like for like
            body["chat_template_kwargs"] = {"reasoning_effort": effort}
            body["generation_config"] = json.dumps({"max_new_tokens": max_tokens, "min_new_tokens": max_tokens,
                                                    "do_sample": False})
        else:
            body["reasoning_effort"] = effort
            body["max_tokens"] = max_tokens
        return body


def normalize_url(url: str) -> str:
    """'http://h:8000/v1/' -> 'http://h:8000'; a URL without a scheme is one line, exit 4."""
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise BenchError(f"--endpoint {display_url(url)}: give an http(s) URL like http://localhost:8000")
    path = parsed.path.rstrip("/").removesuffix("/v1")
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path, "", ""))


def display_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url.strip())
    host = parsed.hostname or ""
    netloc = f"{host}:{parsed.port}" if parsed.port else host
    return urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path, "", "")) or "<no url>"


def parse_endpoints(spec: str) -> list[tuple[str, str]]:
    """`--endpoint URL` or `--endpoint NAME=URL,NAME=URL`: (name, base URL) pairs. One unnamed
    endpoint is called `endpoint`; several unnamed ones by their host and port."""
    pairs = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, url = part.partition("=")
        if not sep or "://" in name:
            name, url = "", part
        pairs.append((name.strip(), normalize_url(url)))
    if not pairs:
        raise BenchError("--endpoint: give a URL like http://localhost:8000 (or NAME=URL,NAME=URL)")
    if len(pairs) == 1 and not pairs[0][0]:
        return [("endpoint", pairs[0][1])]
    named = [(name or urllib.parse.urlsplit(url).netloc.replace(":", "-"), url) for name, url in pairs]
    names = [name for name, _ in named]
    if len(set(names)) != len(names):
        raise BenchError(f"--endpoint: two endpoints have the same name ({', '.join(names)}); name them NAME=URL")
    return named


def api_key(env_name: str) -> str | None:
    return os.environ.get(env_name) or None


def probe(name: str, base_url: str, key: str | None, model: str | None) -> Endpoint:
    """Ask the server which models it serves (GET /v1/models) before anything is measured: an
    unreachable or non-OpenAI endpoint is one line, not a run of failed cases."""
    shown = display_url(base_url)
    request = urllib.request.Request(f"{base_url}/v1/models",
                                     headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
            payload = json.loads(response.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        hint = " (set the API key's variable, see --endpoint-api-key-env)" if exc.code in (401, 403) else ""
        raise BenchError(f"--endpoint {shown}: GET /v1/models answered HTTP {exc.code}{hint}; "
                         "is it an OpenAI-compatible server?") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BenchError(f"--endpoint {shown}: cannot connect ({reason}); start the server or fix the URL") from None
    except ValueError:
        raise BenchError(f"--endpoint {shown}: GET /v1/models did not answer JSON; "
                         "is it an OpenAI-compatible server?") from None
    served = [m.get("id") for m in payload.get("data", []) if isinstance(m, dict)] if isinstance(payload, dict) else []
    if not served:
        raise BenchError(f"--endpoint {shown}: GET /v1/models lists no model; is it an OpenAI-compatible server?")
    if model is not None and model not in served:
        raise BenchError(f"--endpoint-model {model}: {shown} serves {', '.join(map(str, served[:5]))}")
    return Endpoint(name, base_url, model or served[0], key)
