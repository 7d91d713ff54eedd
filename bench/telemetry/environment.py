"""What a run records about where it ran: versions, GPUs, host, git commit, environment.

Environment variables come from an allow-list only, so tokens and keys (HF_TOKEN, WANDB_API_KEY,
anything *_TOKEN / *_KEY / *_SECRET) never reach a manifest, a report or a log; command lines are
redacted the same way.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import re
import socket
import subprocess
from dataclasses import asdict

from bench import __version__
from bench.telemetry.devices import nvml_gpus, torch_cuda_version

PACKAGES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "unsloth", "unsloth_zoo",
            "bitsandbytes", "pytest", "pytest-benchmark", "nvidia-ml-py", "gpt-oss-bench")
ENV_ALLOW = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
             "PYTORCH_CUDA_ALLOC_CONF", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM",
             "UNSLOTH_COMPILE_DISABLE", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "UNSLOTH_COMPILE_LOCATION",
             "UNSLOTH_MEGA_CACHE_DIR", "CI", "GITHUB_SHA", "GITHUB_REF", "GITHUB_RUN_ID", "BENCH_TEST_SLOWDOWN",
             "BENCH_TEST_OOM_AT_BATCH", "BENCH_TEST_CRASH_AT_BATCH")
SECRET_NAME = re.compile(r"(TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.I)
SECRET_VALUE = re.compile(r"(hf_[A-Za-z0-9]{10,}|sk-[A-Za-z0-9_-]{10,}|gh[pousr]_[A-Za-z0-9]{10,}|AKIA[0-9A-Z]{12,})")
URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")  # http://user:password@host
# Secrets this process was handed under a name the patterns above do not know (an endpoint's API
# key read from a variable the user named): redacted like the others.
_SECRETS: set[str] = set()


def add_secret(value: str) -> None:
    if len(value) >= 6:
        _SECRETS.add(value)


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["gpt-oss-bench"] = __version__  # this code's own version, also when run from a checkout never installed
    if out["torch"] is not None:
        out["cuda"] = torch_cuda_version()  # the parent of isolated children never imports torch
    return out


def allowed_environment() -> dict[str, str]:
    return {k: os.environ[k] for k in ENV_ALLOW if k in os.environ and not SECRET_VALUE.search(os.environ[k])}


def redact(text: str) -> str:
    """Replace anything that looks like a credential, and every secret env value, by ***."""
    for name, value in os.environ.items():
        if SECRET_NAME.search(name) and len(value) >= 6:
            text = text.replace(value, "***")
    for value in _SECRETS:
        text = text.replace(value, "***")
    return URL_CREDENTIALS.sub("***@", SECRET_VALUE.sub("***", text))


def redact_argv(argv: list[str]) -> list[str]:
    out, hide_next = [], False
    for arg in argv:
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        flag, eq, _ = arg.partition("=")
        if flag.startswith("-") and SECRET_NAME.search(flag):
            out.append(f"{flag}=***" if eq else flag)
            hide_next = not eq
            continue
        out.append(redact(arg))
    return out


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def hostname_sha256() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:16]


def host() -> dict:
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine()}


def gpus(indices: list[int] | None) -> list[dict]:
    if not indices:
        return []
    return [asdict(g) for g in nvml_gpus() if g.index in indices]


def process_started() -> float:
    """When this process started (epoch seconds): a run's wall time includes its imports and collection."""
    import psutil

    return psutil.Process().create_time()
