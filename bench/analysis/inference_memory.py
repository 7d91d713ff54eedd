"""Will it serve: peak inference memory by batch and context, the KV cache from the model's config
and the rest fitted to measured generation cases. Pure: numbers in, numbers out.

    peak = fixed + KV cache(batch, context) + per_token x batch x context

- fixed: the loaded weights and the engine's workspace (fitted);
- KV cache: computed, not fitted: keys and values in bf16 for every layer, a sliding-window layer
  holding at most its window (`roofline.Shape.kv_bytes_per_token`); at the contexts a benchmark
  generates (a hundred tokens) it is megabytes, at the contexts a user serves it is most of what
  grows, so it must come from the config rather than from a coefficient fitted where it is small;
- per token: the prefill's activations and the logits, linear in the tokens a batch holds (fitted).

A prediction far beyond the measured tokens gets the wide interval its leverage gives it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.analysis.memory_model import Prediction, cases_of, least_squares, predicted
from bench.analysis.roofline import Shape
from bench.errors import BenchError
from bench.records.results import Measurement

TERMS = ("fixed (weights, workspace)", "KV cache (from the config)", "activations")
MIN_POINTS = 3
CONTEXTS = (1024, 4096, 16384, 65536)
MOST_BATCH = 256  # the largest batch the table tries; "256+" where even that fits


@dataclass(frozen=True)
class InferPoint:
    batch_size: int
    context: int  # prompt plus generated tokens of one sequence
    peak_gb: float
    label: str = ""

    @property
    def tokens(self) -> int:
        return self.batch_size * self.context


@dataclass(frozen=True)
class InferenceFit:
    coefficients: tuple[float, float]  # GB; GB per thousand tokens held by the batch
    shape: Shape
    residual_sd: float
    df: int
    covariance: np.ndarray
    points: tuple[InferPoint, ...]

    def kv_gb(self, batch_size: int, context: int) -> float:
        return batch_size * self.shape.kv_bytes_per_token(context) / 1e9

    def predict(self, batch_size: int, context: int, confidence: float = 0.95) -> Prediction:
        x = np.array([1.0, batch_size * context / 1000])
        fixed, activations = (float(c * v) for c, v in zip(self.coefficients, x))
        terms = dict(zip(TERMS, (fixed, self.kv_gb(batch_size, context), activations)))
        return predicted(x, terms, self.residual_sd, self.df, self.covariance, confidence)

    def largest_batch(self, context: int, memory_gb: float, most: int = MOST_BATCH) -> int:
        """The largest batch whose predicted peak, at its interval's upper end, fits `memory_gb` (0: none)."""
        fitting = [b for b in range(1, most + 1) if self.predict(b, context).high <= memory_gb]
        return max(fitting, default=0)

    def largest_batch_text(self, context: int, memory_gb: float) -> str:
        batch = self.largest_batch(context, memory_gb)
        return "none" if not batch else f"{batch}+" if batch >= MOST_BATCH else str(batch)

    def describe(self) -> list[str]:
        fixed, per_token = self.coefficients
        per_sequence = self.shape.kv_bytes_per_token(4096) / 1e9
        return [f"{TERMS[0]}: {fixed:.2f} GB",
                f"{TERMS[1]}: {per_sequence * 1e3:.1f} MB per sequence of 4,096 tokens ({self.shape.layers} layers, "
                f"{self.shape.sliding_layers} of them holding at most {self.shape.sliding_window} tokens)",
                f"{TERMS[2]}: {per_token * 1e3:.2f} MB per thousand tokens held by the batch",
                f"residual spread {self.residual_sd:.3f} GB over {len(self.points)} points ({self.df} degrees of freedom)"]


def fit_inference(points: list[InferPoint], shape: Shape) -> InferenceFit:
    """Least squares of what the KV cache leaves of each peak; needs MIN_POINTS and two token counts."""
    if len(points) < MIN_POINTS or len({p.tokens for p in points}) < 2:
        raise BenchError(f"{len(points)} generation points with {len({p.tokens for p in points})} batch x context "
                         f"sizes: the inference model needs {MIN_POINTS} or more and two sizes (run the standard "
                         "profile's generation cases: pytest suites/test_infer.py --profile standard)")
    coefficients, sd, df, covariance = least_squares(
        np.array([[1.0, p.tokens / 1000] for p in points]),
        np.array([p.peak_gb - p.batch_size * shape.kv_bytes_per_token(p.context) / 1e9 for p in points]))
    return InferenceFit(coefficients, shape, sd, df, covariance, tuple(points))


def infer_points_of(records: list[Measurement]) -> list[InferPoint]:
    """The generation cases of runs as points: their peak (torch's allocator on a GPU, resident
    memory on the CPU) and the context one sequence reached (its prompt and its generated tokens,
    as the case's decode record counts them)."""
    points = []
    for run_id, metrics, peak in cases_of(records, "infer", "batch_size"):
        decode = metrics.get("decode_tok_s")
        if decode is None or "prompt_tokens" not in decode.extra:
            continue
        generated = max((sum(channel.values()) for channel in decode.extra.get("channels") or []), default=0)
        params = peak.params
        points.append(InferPoint(int(params["batch_size"]), int(decode.extra["prompt_tokens"]) + generated, peak.value,
                                 f"{run_id}: batch {params['batch_size']}"
                                 + (f", {params['effort']}" if "effort" in params else "")))
    return points
