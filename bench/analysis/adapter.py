"""Whether a reloaded adapter is the adapter that was trained: pure, numpy only.

Greedy outputs compared token for token were the first check, and a wrong one both ways. For a
model whose next-token distributions are nearly flat it fails a right reload: on an H100 the 20B
replica (random weights, four training steps) flipped a near tie
(docs/measurements/h100-runs.md). And it passes a wrong one: an adapter with its B
matrices halved reproduced the tiny model's greedy output token for token. What is compared
instead is the distributions on the same prefixes (`NextTokenScores`): how far the reloaded
adapter's are from the in-memory adapter's, as a share of how far training moved the base model's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The reloaded adapter may differ from the in-memory one by this share of the adapter's own effect.
# The same weights through another code path (PeftModel over a fresh base against the trained model)
# differ by rounding: 0.000013-0.0018 for the 20B replica with Unsloth on an H100, 0 for the tiny
# model (docs/running.md). B matrices halved read 0.68, no
# adapter 1.
RELOAD_GAP_MAX = 0.05


@dataclass(frozen=True)
class RoundTrip:
    gap: float  # reloaded vs in-memory, as a share of base vs in-memory (mean total variation)
    changed: bool  # the base model's greedy choice differs from the adapter's at some position
    agreement: float  # positions where the reloaded adapter's greedy choice is the in-memory one's

    @property
    def reproduced(self) -> bool:
        return self.gap <= RELOAD_GAP_MAX


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """Mean over positions of half the L1 distance between next-token distributions."""
    return float(0.5 * np.abs(p - q).sum(axis=-1).mean())


def round_trip(in_memory: np.ndarray, reloaded: np.ndarray, base: np.ndarray) -> RoundTrip:
    """Arrays of (steps, batch, vocab) probabilities on the same prefixes: those of the in-memory
    adapter's own greedy continuation."""
    effect = total_variation(in_memory, base)
    chosen = in_memory.argmax(axis=-1)
    return RoundTrip(gap=total_variation(reloaded, in_memory) / effect if effect > 0 else float("inf"),
                     changed=bool((base.argmax(axis=-1) != chosen).any()),
                     agreement=float((reloaded.argmax(axis=-1) == chosen).mean()))
