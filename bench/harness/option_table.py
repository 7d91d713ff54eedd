"""The harness's options, declared once: one table builds the pytest options, the `BenchOptions` a
session is given, and the options table of the documentation (a test checks the three agree)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from bench.analysis.options import THRESHOLD_DEFAULT, parse_threshold
from bench.serving.endpoint import DEFAULT_KEY_ENV


@dataclass(frozen=True)
class BenchOptions:
    gpu: str | None = None
    model: str = "tiny-gpt-oss"
    backend: str = "auto"
    profile: str = "quick"
    baseline: str | None = None
    compare: str | None = None
    fail_on_regression: bool = False
    report_dir: str = "reports"
    dataset: str = "builtin"
    run_id: str | None = None
    precision: str = "auto"
    threshold: float = 0.05
    resume: str | None = None
    confirm: bool = False  # re-measure suspected regressions before they fail the run
    baseline_dir: str | None = None
    require_checks: bool = False  # no baseline check applying is a failure, not a silent green
    gpu_price_per_hour: str | None = None  # a number, or a TOML price table by GPU name
    isolate: str = "auto"  # auto | off | group | case (bench.harness.isolate)
    max_time: float | None = None  # adaptive rounds' time cap per case; None: the profile's
    worker_run: str | None = None  # set in a worker's process: the controller's run directory
    workers_per_gpu: int = 1
    each_gpu: bool = False
    workers: int | None = None  # a worker count given to pytest-xdist (-n N)
    dist: str | None = None  # the --dist given to pytest-xdist
    worker_id: str | None = None  # this process is xdist worker gwN of a multi-device session
    turn: int | None = None  # its place in the queue of workers taking turns on one device
    run_gpus: tuple[int, ...] | None = None  # a worker's: every GPU of the run (the concurrency suite's)
    endpoint: str | None = None  # the serving suite's OpenAI-compatible server(s): URL or NAME=URL,...
    endpoint_model: str | None = None
    endpoint_key_env: str = DEFAULT_KEY_ENV  # the variable holding the endpoint's API key
    slo: str | None = None  # the serving suite's objectives, e.g. "ttft=2s,tpot=100ms"
    servers: str | None = None  # the self-started servers, comma-separated (None: the profile's)
    crosscheck: str = "auto"  # auto (the profile's) | on | off: the cross-check against a plain script at the end
    crosscheck_repeats: int = 3
    plain_control: bool = False  # time a plain generate beside each generation round, in the same process


@dataclass(frozen=True)
class Option:
    """One command-line option: its flag, the `BenchOptions` field it sets (None: read where it is
    used), its help, and what argparse needs beyond that. `convert` turns the parsed value into the
    field's; `hidden` options carry state from a parent process to its children."""

    flag: str
    field: str | None
    help: str
    default: Any = None
    argparse: dict = field(default_factory=dict)
    convert: Callable[[Any], Any] | None = None
    hidden: bool = False


def _gpus(text: str | None) -> tuple[int, ...] | None:
    return tuple(int(g) for g in text.split(",")) if text else None


O = Option
OPTIONS: tuple[Option, ...] = (
    O("--gpu", "gpu", "GPU index as nvidia-smi shows it, or 'cpu' (default: GPU 0 if present); 0,1 or all: one "
      "pytest-xdist worker per GPU"),
    O("--model", "model", "tiny-gpt-oss | replica:gpt-oss-20b | a hub name | a local path", "tiny-gpt-oss"),
    O("--backend", "backend", "auto | hf | unsloth, or hf,unsloth to compare engines (auto: unsloth when CUDA and "
      "unsloth are there, hf for the tiny model)", "auto"),
    O("--profile", "profile", "quick | standard | fit | full: the parameter grid (fit: training points for bench fit)", "quick"),
    O("--baseline", "baseline", "a baseline name (./baselines first, then the shipped ones) or a TOML file "
      "(default: by model and GPU)"),
    O("--baseline-dir", "baseline_dir", "your baselines, searched before the shipped ones (default: "
      "$BENCH_BASELINE_DIR, else ./baselines)"),
    O("--require-checks", "require_checks", "fail when no baseline check applies to the run (no silent green)",
      False, {"action": "store_true"}),
    O("--compare", "compare", "a run directory or results.jsonl to compare this run with"),
    O("--fail-on-regression", "fail_on_regression", "exit 1 when --compare finds a regression in a gating metric",
      False, {"action": "store_true"}),
    O("--confirm", "confirm", "re-measure the cases --compare suspects, in a fresh process; only a regression found "
      "again fails", False, {"action": "store_true"}),
    O("--threshold", "threshold", "smallest change --compare calls a regression", THRESHOLD_DEFAULT,
      convert=parse_threshold),
    O("--report-dir", "report_dir", "where run directories are written", "reports"),
    O("--run-id", "run_id", "the run directory's name (default: time, model and device)"),
    O("--resume", "resume", "a run directory to continue: runs only its unfinished cases"),
    O("--dataset", "dataset", "training data: builtin | a local .json/.jsonl/.csv/.parquet | a dataset in your HF "
      "cache", "builtin"),
    O("--precision", "precision", "auto | 4bit | bf16: weights on a GPU (auto: 4-bit, the seed's setting; the tiny "
      "model bf16)", "auto"),
    O("--isolate", "isolate", "auto | group | case | off: each load group (group) or case (case, also a bare "
      "--isolate) in a fresh process (auto: group on a GPU, off on the CPU)", "auto",
      {"nargs": "?", "const": "case", "metavar": "MODE"}),
    O("--max-time", "max_time", "adaptive rounds: repeat a timed case until its 95% interval is within +-2% of its "
      "median or S seconds of rounds are spent (default: the profile's)", None, {"type": float, "metavar": "S"}),
    O("--workers-per-gpu", "workers_per_gpu", "workers per GPU of --gpu, running at the same time", 1, {"type": int}),
    O("--each-gpu", "each_gpu", "with several GPUs: every case on each of them instead of spreading the cases",
      False, {"action": "store_true"}),
    O("--shard", None, "i/n: run only shard i (0-based) of n of the cases; join shards with bench merge"),
    O("--endpoint", "endpoint", "the serving suite's OpenAI-compatible server: URL, or NAME=URL,NAME=URL to compare "
      "several (default: start transformers serve, see --servers)", None, {"metavar": "URL"}),
    O("--servers", "servers", "without --endpoint, the servers the serving suite starts: transformers, "
      "transformers-cb, or both comma-separated (default: the profile's)", None, {"metavar": "NAMES"}),
    O("--endpoint-model", "endpoint_model", "the model name to request (default: the first of GET /v1/models)"),
    O("--endpoint-api-key-env", "endpoint_key_env", "the variable holding the endpoint's API key, which never "
      "reaches a record, log or report", DEFAULT_KEY_ENV, {"metavar": "VAR"}),
    O("--slo", "slo", "the serving suite's objectives, e.g. ttft=2s,tpot=100ms (default: the baseline's [slo], "
      "else ttft=2s,tpot=100ms)"),
    O("--gpu-price-per-hour", "gpu_price_per_hour", "USD per GPU-hour, or a TOML file with a [prices] table by GPU "
      "name, for the report's costs"),
    O("--crosscheck", "crosscheck", "auto | on | off: end the run with the cross-check, its headline figures "
      "against a plain script's on this host, interleaved (auto: the profile's; standard and full)", "auto",
      {"nargs": "?", "const": "on", "metavar": "MODE"}),
    O("--crosscheck-repeats", "crosscheck_repeats", "repeats of (plain script, harness) in the cross-check", 3,
      {"type": int, "metavar": "N"}),
    O("--plain-control", "plain_control", "time each generation case's prompts the plain way too (a clock around "
      "generate), in its own process before each timed round: plain_ttft_s and plain_decode_tok_s beside its "
      "figures, which split a gap to your script into the case's code path and its process (the cross-check's "
      "repeats use it)", False, {"action": "store_true"}),
    O("--bench-worker-run", "worker_run", "a worker's or child's run directory", hidden=True),
    O("--bench-run-gpus", "run_gpus", "a worker's child: every GPU of the run", hidden=True, convert=_gpus),
    O("--bench-reports", None, "an isolated child's reports file", hidden=True),
    O("--bench-standby", None, "an isolated child's go file", hidden=True),
)
del O


def add_options(group) -> None:
    """The table as pytest options, under one group."""
    for option in OPTIONS:
        help_text = argparse.SUPPRESS if option.hidden else option.help + (
            f" (default: {option.default})" if option.default not in (None, False) else "")
        group.addoption(option.flag, default=option.default, help=help_text.replace("%", "%%"), **option.argparse)


def bench_options(getoption: Callable[[str], Any], **plumbing: Any) -> BenchOptions:
    """`BenchOptions` from the parsed command line (`config.getoption`), with what the session's
    process knows beyond it (xdist's worker count and distribution)."""
    values = {}
    for option in OPTIONS:
        if option.field is None:
            continue
        value = getoption(option.flag)
        values[option.field] = option.convert(value) if option.convert and value is not None else value
    return BenchOptions(**values, **plumbing)


def options_table() -> list[tuple[str, str]]:
    """(option, meaning) of every option a user sets: the documentation's table."""
    return [(f"`{o.flag}`", o.help.replace("|", "\\|")) for o in OPTIONS if not o.hidden]


def check_defaults() -> list[str]:
    """Options whose table default differs from their field's default (a test keeps this empty)."""
    defaults = {f.name: f.default for f in fields(BenchOptions)}
    out = []
    for o in OPTIONS:
        if o.field is None or o.hidden:
            continue
        expected = o.convert(o.default) if o.convert and o.default is not None else o.default
        if defaults[o.field] != expected:
            out.append(f"{o.flag}: {o.default!r} against {defaults[o.field]!r}")
    return out
