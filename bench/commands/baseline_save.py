"""`bench baseline save RUN [RUN ...] --name NAME`: runs frozen into a baseline file that a later
run of the same profile on the same machine passes unless it really got slower or worse.

A limit is only as good as the noise estimate behind it, and within one run samples cannot see
between-run drift: on the 2-core machine this project is built on, one case of the tiny model
moved by up to 2.6x between two runs of 23 (time to first token; decode throughput 2.2x, a warm
load 2x) while its own samples agreed within a few percent. So:
- a repeated measurement (timings, throughput) becomes a check only from several runs: its limit
  is the worst run's value widened by WIDEN times the between-run coefficient of variation, at
  least the tolerance (default 5%), and the file also carries per-metric comparison thresholds
  from that spread. From one run it is kept as a [reference] only, shown beside later runs;
- a single reading (final loss, adapter size, torch peak memory) becomes a check from one run or
  several, widened by the registry's tolerance of that metric (and the spread, if any).
Only metrics the registry marks `frozen`, in the cases where they gate, become checks; each names
its case exactly and the file names its profile, so a run of another profile never picks it up by
default, and a plain run of the same profile right after passes. A run made with a test-only fault
or slowdown hook set is refused.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from bench.analysis.baselines import load_baseline
from bench.analysis.runs import RunData, load_run
from bench.analysis.stats import geometric_mean, summarize
from bench.errors import BenchError
from bench.records.metrics import METRICS, PARAM_KEYS, gates, named
from bench.records.results import params_key

WIDEN = 3.0  # limits sit this many coefficients of variation beyond the worst value seen
DEFAULT_TOLERANCE = 0.05


def _toml_value(v) -> str:
    return f'"{v}"' if isinstance(v, str) else repr(v)


def _where(suite: str, params: dict, backend: str | None) -> str:
    items = {"suite": suite, **({"backend": backend} if backend else {}),
             **{k: v for k, v in params.items() if k in PARAM_KEYS}}
    return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in items.items()) + " }"


def _cv(values: list[float]) -> float:
    return summarize(values).cv if len(values) > 1 and statistics.mean(values) else 0.0


def _runs(run_dirs: list[Path]) -> list[RunData]:
    runs = [load_run(d) for d in run_dirs]
    for run in runs:
        if run.manifest.test_hooks:
            raise BenchError(f"{run.run_dir}: made with test-only hooks set "
                             f"({', '.join(run.manifest.test_hooks)}); its figures are not a real measurement")
    first = runs[0].manifest
    for run in runs[1:]:
        m = run.manifest
        if (m.model, m.profile, m.backend, _gpu(m)) != (first.model, first.profile, first.backend, _gpu(first)):
            raise BenchError(f"{run.run_dir}: {m.model}/{m.profile}/{m.backend} on {_gpu(m)} differs from "
                             f"{runs[0].run_dir}'s {first.model}/{first.profile}/{first.backend} on {_gpu(first)}; "
                             "freeze runs of one configuration on one kind of machine")
    return runs


def _gpu(manifest) -> str:
    return manifest.gpus[0]["name"] if manifest.gpus else "cpu"


def freeze(run_dirs: list[Path], name: str, directory: Path, tolerance: float | None = None,
           force: bool = False) -> Path:
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise BenchError(f"--name {name}: use letters, digits, '-', '_' and '.' only")
    path = directory / f"{name}.toml"
    if path.exists() and not force:
        raise BenchError(f"{path} exists; pass --force to overwrite it or choose another --name")
    runs = _runs(run_dirs)
    several = len(runs) > 1
    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    m = runs[0].manifest
    backends = m.backend.split(",")
    frozen = named("frozen")
    values: dict[tuple, list] = {}
    for run in runs:
        for r in run.ok:
            if r.metric in frozen:
                key = (r.metric, r.suite, r.backend if len(backends) > 1 else None, params_key(r.params))
                values.setdefault(key, []).append(r)
    if not values:
        raise BenchError(f"{run_dirs[0]}: no measurement to freeze (no ok records of {', '.join(frozen)})")
    how = (f"{len(runs)} runs: limits are each case's worst run widened by {WIDEN:g} between-run CVs, at least "
           f"{tolerance:.0%}" if several else
           "one run: single readings are checked within their tolerance; timings and throughput are references "
           "only, since one run cannot show the drift between runs (freeze several runs to check them)")
    lines = [f"# Frozen by `bench baseline save` from {', '.join(r.manifest.run_id for r in runs)} "
             f"({m.model}, {m.backend}, {_gpu(m)}, profile {m.profile}).", f"# {how}.",
             "[meta]", f'name = "{name}"', f'model = "{m.model}"', f'gpu = "{_gpu(m)}"', f'profile = "{m.profile}"',
             "", "[checks]"]
    checks: dict[str, list[str]] = {}
    refs: dict[str, list[str]] = {}
    spread: dict[str, float] = {}
    for (metric, suite, backend, _), records in sorted(values.items(), key=lambda kv: str(kv[0])):
        if several and len(records) < len(runs):
            continue  # measured in some runs only: no spread to set a limit from
        spec, params = METRICS[metric], records[0].params
        run_values = [r.value for r in records]
        repeated = len(records[0].samples) > 1
        center = geometric_mean(run_values) if min(run_values) > 0 else statistics.mean(run_values)
        where = _where(suite, params, backend)
        refs.setdefault(metric, []).append(f"  {{ value = {center:.6g}, where = {where} }},")
        if not gates(metric, params) or (repeated and not several):
            continue  # a reference only: not a gating case, or a timing one run cannot bound
        cv = _cv(run_values) if several else 0.0
        if several and repeated:  # thresholds are for metrics judged by intervals
            spread[metric] = max(spread.get(metric, 0.0), cv)
        slack = max(tolerance, WIDEN * cv, spec.tolerance or 0.0)
        if spec.better == "lower":
            bound = f"max = {max(run_values) * (1 + slack):.6g}"
        else:
            bound = f"min = {min(run_values) / (1 + slack):.6g}"
        checks.setdefault(metric, []).append(f"  {{ {bound}, where = {where} }},  # {center:.6g}, cv {cv:.1%}")
    for metric, entries in checks.items():
        lines += [f"{metric} = [", *entries, "]"]
    lines += ["", "[reference]"]
    for metric, entries in refs.items():
        lines += [f"{metric} = [", *entries, "]"]
    if several:
        lines += ["", f"# comparison thresholds: twice each metric's largest between-run CV, at least "
                      f"{DEFAULT_TOLERANCE:.0%}", "[thresholds]"]
        lines += [f"{metric} = {max(DEFAULT_TOLERANCE, 2 * cv):.3g}" for metric, cv in spread.items()]
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    load_baseline(path)  # what was written must read back: fail here, not in the next run
    return path
