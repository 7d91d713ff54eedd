"""`bench baseline save`: a run's medians, with room for their noise, frozen into a baseline file.

Each timed or measured case becomes a check on its own parameters: max = median x (1 + slack) for
lower-is-better metrics, min = median / (1 + slack) for higher-is-better ones, where the slack is
the larger of the tolerance and three coefficients of variation of the run's own samples. The
medians are kept as [reference] values too, and the noise as a comment beside each.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from bench.analysis.baselines import load_baseline
from bench.errors import BenchError
from bench.records.metrics import PARAM_KEYS
from bench.analysis.runs import load_run

FROZEN = ("load_s", "s_per_step", "train_tokens_per_s", "final_loss", "peak_vram_gb", "peak_rss_gb", "ttft_s",
          "decode_tok_s", "itl_p50_ms", "adapter_mb", "energy_j_per_token")
NOISE_MULTIPLE = 3


def _toml_value(v) -> str:
    return f'"{v}"' if isinstance(v, str) else repr(v)


def _where(suite: str, params: dict) -> str:
    items = {"suite": suite, **{k: v for k, v in params.items() if k in PARAM_KEYS}}
    return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in items.items()) + " }"


def freeze(run_dir: Path, name: str, directory: Path, tolerance: float = 0.05, force: bool = False) -> Path:
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise BenchError(f"--name {name}: use letters, digits, '-', '_' and '.' only")
    path = directory / f"{name}.toml"
    if path.exists() and not force:
        raise BenchError(f"{path} exists; pass --force to overwrite it or choose another --name")
    run = load_run(run_dir)
    m = run.manifest
    gpu = m.gpus[0]["name"] if m.gpus else "cpu"
    lines = [f"# Frozen from run {m.run_id} ({m.model}, {m.backend}, {gpu}) by `bench baseline save`.",
             "[meta]", f'name = "{name}"', f'model = "{m.model}"', f'gpu = "{gpu}"', "", "[checks]"]
    refs = ["", "[reference]"]
    by_metric: dict[str, list[str]] = {}
    ref_metric: dict[str, list[str]] = {}
    for r in run.ok:
        if r.metric not in FROZEN:
            continue
        cv = statistics.stdev(r.samples) / statistics.mean(r.samples) if len(r.samples) > 1 and statistics.mean(r.samples) else 0.0
        slack = max(tolerance, NOISE_MULTIPLE * cv)
        bound = (f"max = {r.value * (1 + slack):.6g}" if r.better == "lower" else f"min = {r.value / (1 + slack):.6g}")
        by_metric.setdefault(r.metric, []).append(f"  {{ {bound}, where = {_where(r.suite, r.params)} }},  # median {r.value:.6g}, cv {cv:.1%}")
        ref_metric.setdefault(r.metric, []).append(f"  {{ value = {r.value:.6g}, where = {_where(r.suite, r.params)} }},")
    if not by_metric:
        raise BenchError(f"{run_dir}: no measurement to freeze (the run has no ok records of {', '.join(FROZEN)})")
    for metric, entries in by_metric.items():
        lines += [f"{metric} = [", *entries, "]"]
    for metric, entries in ref_metric.items():
        refs += [f"{metric} = [", *entries, "]"]
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines + refs) + "\n", encoding="utf-8")
    load_baseline(path)  # what was written must read back: fail here, not in the next run
    return path
