"""Per-token timing of one `generate` call, from a logits processor.

`generate` calls its logits processors once per new token, right after the forward pass that
produced that token's logits. Synchronizing the device there and reading the clock gives, from one
call: time to first token (prefill + first step), every inter-token latency and the decode rate,
with no second pass and no streamer thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.telemetry import failpoints
from bench.telemetry.timer import synchronize


class TokenClock:
    """A LogitsProcessor that stamps the clock at every generated token."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.started = 0.0
        self.stamps: list[float] = []

    def start(self) -> None:
        synchronize(self.device)
        self.stamps = []
        self.started = time.perf_counter()

    def __call__(self, input_ids, scores):
        synchronize(self.device)
        now = time.perf_counter()
        failpoints.stretch(now - (self.stamps[-1] if self.stamps else self.started))
        self.stamps.append(time.perf_counter())
        return scores


@dataclass(frozen=True)
class GenerationTiming:
    batch_size: int
    new_tokens: int  # per sequence
    ttft_s: float
    total_s: float
    itl_ms: tuple[float, ...]

    @property
    def decode_s(self) -> float:
        return self.total_s - self.ttft_s

    @property
    def decode_tok_s(self) -> float:
        """Tokens after the first, all sequences of the batch, per second of decoding."""
        return self.batch_size * (self.new_tokens - 1) / self.decode_s if self.decode_s > 0 else float("nan")

    @property
    def decode_tok_s_per_seq(self) -> float:
        return self.decode_tok_s / self.batch_size

    @classmethod
    def from_clock(cls, clock: TokenClock, batch_size: int) -> "GenerationTiming":
        if len(clock.stamps) < 2:
            raise ValueError("need at least two generated tokens to time decoding")
        stamps = clock.stamps
        itl = tuple((b - a) * 1000 for a, b in zip(stamps, stamps[1:]))
        return cls(batch_size, len(stamps), stamps[0] - clock.started, stamps[-1] - clock.started, itl)


class NextTokenScores:
    """A LogitsProcessor that keeps each step's next-token distribution and, given `follow`, makes
    the step choose that reference token instead of its own.

    Following one reference continuation, several models are compared position by position on the
    same prefixes (teacher forcing) through the very `generate` path they run: a near tie that
    flips one greedy token no longer sends the rest of the output elsewhere. Distributions are taken
    after the earlier processors (min_new_tokens masks the end token), the same for every model.
    """

    def __init__(self, follow: list[list[int]] | None = None) -> None:
        self.follow = follow
        self.probs: list = []  # per step: (batch, vocab) probabilities, float32 on the CPU

    def __call__(self, input_ids, scores):
        import torch

        self.probs.append(torch.softmax(scores.float(), dim=-1).cpu())
        if self.follow is None:
            return scores
        step = len(self.probs) - 1
        chosen = torch.tensor([row[step] for row in self.follow], device=scores.device)
        forced = torch.full_like(scores, float("-inf"))
        return forced.scatter_(1, chosen[:, None], 0.0)

    def as_array(self):
        """(steps, batch, vocab) as a numpy array."""
        import torch

        return torch.stack(self.probs).numpy()
