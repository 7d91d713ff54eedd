"""Will it fit: peak training memory as a sum of named terms, fitted by least squares to measured
points, and predicted with its interval for configurations nobody ran. Pure: numbers in, numbers out.

    peak = fixed + per_parameter x trainable LoRA parameters + per_token x tokens per micro-batch

- fixed: the (4-bit) weights and the engine's workspace, whatever the rank and batch;
- per trainable parameter: the LoRA weights, their gradients and the optimizer's states (about 10
  bytes a parameter: fp32 weights and gradients, 8-bit Adam's two states); trainable parameters grow
  linearly with the rank, at the model's own parameters per rank (measured: `trainable_params_m`);
- per token of a micro-batch: the activations kept under gradient checkpointing, linear in batch x
  sequence length.

Each term's fitted value is shown, so the fit explains itself, and the prediction interval is the
ordinary least squares one (t quantile, the residual spread, the point's leverage): a configuration
far from the measured ones gets a wide interval rather than a confident number.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from bench.errors import BenchError
from bench.records.results import Measurement

TERMS = ("fixed (weights, workspace)", "LoRA parameters, gradients, optimizer", "activations")
# Memory of common GPUs, GB as the vendors state it: `--gpu NAME` picks the longest name contained.
GPU_MEMORY_GB = {"T4": 16, "V100": 16, "RTX 4080": 16, "A10": 24, "A10G": 24, "L4": 24, "RTX 3090": 24,
                 "RTX 4090": 24, "A100": 40, "A100 80GB": 80, "A6000": 48, "L40S": 48, "L40": 48, "RTX 5090": 32,
                 "H100": 80, "H100 NVL": 94, "GH200": 96, "H200": 141, "B200": 180, "A40": 48,
                 "RTX 6000 Ada": 48, "RTX 3080": 10, "RTX 4070": 12, "RTX 3060": 12}
TABLE_SIZES_GB = (16, 24, 40, 48, 80)
MIN_POINTS = 4


@dataclass(frozen=True)
class Point:
    lora_r: int
    batch_size: int
    tokens: float  # tokens per micro-batch (batch x sequence length)
    trainable_m: float  # trainable parameters, millions
    peak_gb: float
    label: str = ""


@dataclass(frozen=True)
class Prediction:
    peak_gb: float
    low: float
    high: float
    terms: dict[str, float]

    def verdict(self, memory_gb: float) -> str:
        """One line: fits with what to spare, or needs how much; on the interval's upper end."""
        if self.high <= memory_gb:
            return f"fits with {memory_gb - self.high:.1f} GB to spare (predicted {self.peak_gb:.1f} GB, " \
                   f"up to {self.high:.1f} GB)"
        if self.low > memory_gb:
            return f"does not fit: needs {self.peak_gb:.1f} GB ({self.low:.1f}-{self.high:.1f}) of {memory_gb:g}"
        return (f"may not fit: predicted {self.peak_gb:.1f} GB ({self.low:.1f}-{self.high:.1f}), "
                f"{memory_gb:g} GB lies inside the interval")


@dataclass(frozen=True)
class MemoryFit:
    coefficients: tuple[float, float, float]  # GB, GB per million parameters, GB per thousand tokens
    params_per_rank_m: float  # trainable parameters per unit of rank, millions
    residual_sd: float
    df: int
    covariance: np.ndarray  # (X'X)^-1
    points: tuple[Point, ...]

    def predict(self, lora_r: int, batch_size: int, seq_len: int, confidence: float = 0.95) -> Prediction:
        x = np.array([1.0, lora_r * self.params_per_rank_m, batch_size * seq_len / 1000])
        terms = dict(zip(TERMS, (float(c * v) for c, v in zip(self.coefficients, x))))
        return predicted(x, terms, self.residual_sd, self.df, self.covariance, confidence)

    def largest_batch(self, lora_r: int, seq_len: int, memory_gb: float, most: int = 64) -> int:
        """The largest batch whose predicted peak, at its interval's upper end, fits `memory_gb` (0: none)."""
        fitting = [b for b in range(1, most + 1) if self.predict(lora_r, b, seq_len).high <= memory_gb]
        return max(fitting, default=0)

    def describe(self) -> list[str]:
        fixed, per_param, per_token = self.coefficients
        return [f"{TERMS[0]}: {fixed:.2f} GB",
                f"{TERMS[1]}: {per_param:.4f} GB per million trainable parameters ({per_param * 1e3:.1f} bytes a "
                f"parameter; {self.params_per_rank_m:.2f} M parameters per unit of rank)",
                f"{TERMS[2]}: {per_token:.3f} GB per thousand tokens of a micro-batch",
                f"residual spread {self.residual_sd:.3f} GB over {len(self.points)} points ({self.df} degrees of freedom)"]


def fit(points: list[Point]) -> MemoryFit:
    """Least squares over the points; needs at least MIN_POINTS, two ranks and two token counts."""
    if len(points) < MIN_POINTS:
        raise BenchError(f"{len(points)} training points: the model has 3 terms and needs {MIN_POINTS} or more "
                         "(run the fit profile: pytest suites/test_train.py --profile fit)")
    if len({p.trainable_m for p in points}) < 2 or len({p.tokens for p in points}) < 2:
        raise BenchError("the points need two or more ranks and two or more batch x sequence sizes to tell "
                         "the terms apart (run the fit profile: pytest suites/test_train.py --profile fit)")
    per_rank = float(np.median([p.trainable_m / p.lora_r for p in points]))
    coefficients, sd, df, covariance = least_squares(np.array([[1.0, p.trainable_m, p.tokens / 1000] for p in points]),
                                                     np.array([p.peak_gb for p in points]))
    return MemoryFit(coefficients, per_rank, sd, df, covariance, tuple(points))


def parse_memory(text: str) -> float:
    """'24GB', '24 GB', '24' -> 24.0; a GPU's name (`--gpu "RTX 4090"`) is `gpu_memory`'s."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(GB|G|GiB)?\s*", text, re.I)
    if not match:
        raise BenchError(f"--gpu-memory {text}: give it in GB, e.g. 24GB")
    value = float(match.group(1))
    return value * 1.073741824 if (match.group(2) or "").lower() == "gib" else value


def gpu_memory(name: str) -> float:
    """A GPU's memory from its name: the size the name states where it states one (nvidia-smi's
    "NVIDIA A100-SXM4-40GB"; not a superchip's "GH200 480GB", its CPU's memory counted in), else
    the longest known name it contains."""
    stated = re.search(r"(\d+)\s*GB", name, re.I)
    if stated and int(stated.group(1)) <= max(GPU_MEMORY_GB.values()) and "GH200" not in name.upper():
        return float(stated.group(1))
    known = [k for k in GPU_MEMORY_GB if k.lower() in name.lower()]
    if not known:
        raise BenchError(f"--gpu {name}: no memory size known for it; give --gpu-memory 24GB instead "
                         f"(known: {', '.join(GPU_MEMORY_GB)})")
    return float(GPU_MEMORY_GB[max(known, key=len)])


def cases_of(records: list[Measurement], suite: str, param: str) -> list[tuple[str, dict[str, Measurement], Measurement]]:
    """Each measured case of `suite` (one with `param`) of each run, engine and GPU: (run id, its
    records by metric, its peak: torch's allocator on a GPU, resident memory on the CPU)."""
    by_case: dict[tuple, dict[str, Measurement]] = {}
    for r in records:
        if r.suite == suite and r.status == "ok" and r.value is not None and param in r.params:
            by_case.setdefault((r.run_id, r.backend, r.gpu_uuid, tuple(sorted(r.params.items()))), {})[r.metric] = r
    return [(run_id, metrics, peak) for (run_id, *_), metrics in by_case.items()
            if (peak := metrics.get("peak_vram_gb") or metrics.get("peak_rss_gb")) is not None]


def least_squares(x: np.ndarray, y: np.ndarray) -> tuple[tuple[float, ...], float, int, np.ndarray]:
    """Ordinary least squares of y on the columns of x: (coefficients, residual spread, degrees of
    freedom, (x'x)^-1 for the prediction interval); the spread is nan without a degree of freedom."""
    coefficients, *_ = np.linalg.lstsq(x, y, rcond=None)
    residuals = y - x @ coefficients
    df = len(y) - x.shape[1]
    sd = float(math.sqrt(residuals @ residuals / df)) if df > 0 else math.nan
    return tuple(float(c) for c in coefficients), sd, df, np.linalg.pinv(x.T @ x)


def predicted(x: np.ndarray, terms: dict[str, float], residual_sd: float, df: int, covariance: np.ndarray,
              confidence: float) -> Prediction:
    """The peak as the sum of its terms, with the least squares prediction interval at `x` (t
    quantile, residual spread, leverage); no interval without a degree of freedom."""
    from scipy import stats as st

    peak = float(sum(terms.values()))
    if df < 1:
        return Prediction(peak, math.nan, math.nan, terms)
    half = float(st.t.ppf(0.5 + confidence / 2, df)) * residual_sd * math.sqrt(1 + float(x @ covariance @ x))
    return Prediction(peak, peak - half, peak + half, terms)


def points_of(records: list[Measurement]) -> list[Point]:
    """The training cases of runs as points: their peak, trainable parameters and tokens per
    micro-batch (tokens per step, from the measured rate and step time, over the accumulation)."""
    points = []
    for run_id, metrics, peak in cases_of(records, "train", "lora_r"):
        needed = ("trainable_params_m", "train_tokens_per_s", "s_per_step")
        if not all(m in metrics for m in needed):
            continue
        params = peak.params
        tokens = metrics["train_tokens_per_s"].value * metrics["s_per_step"].value / params.get("grad_accum", 1)
        points.append(Point(int(params["lora_r"]), int(params["batch_size"]), tokens,
                            metrics["trainable_params_m"].value, peak.value,
                            f"{run_id}: r={params['lora_r']}, batch {params['batch_size']}x{params.get('grad_accum', 1)}"
                            + (f", {params['seq_len']} tokens" if "seq_len" in params else "")))
    return points


def held_out(points: list, count: int, minimum: int = MIN_POINTS) -> tuple[list, list]:
    """(fitted on, held out): `count` points spread evenly over the set, in its order."""
    if count <= 0:
        return points, []
    if len(points) - count < minimum:
        raise BenchError(f"--hold-out {count}: leaves {len(points) - count} points to fit; the model needs "
                         f"{minimum} or more")
    step = len(points) / count
    out = {int(i * step + step / 2) for i in range(count)}
    return [p for i, p in enumerate(points) if i not in out], [p for i, p in enumerate(points) if i in out]
