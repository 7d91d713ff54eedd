"""Training figures derived from a loss curve and an adapter directory; pure, no torch."""

from __future__ import annotations

from pathlib import Path

TARGET_LOSS = 1.5  # the seed's success criterion: training loss under 1.5
FINAL_WINDOW = 5  # the final loss is the mean of the last logged steps: one step is too noisy


def final_loss(curve: list[tuple[int, float]], window: int = FINAL_WINDOW) -> float:
    tail = [loss for _, loss in curve[-window:]]
    return sum(tail) / len(tail)


def steps_to_target(curve: list[tuple[int, float]], target: float = TARGET_LOSS,
                    window: int = FINAL_WINDOW) -> int | None:
    """The first step at which the mean of the last `window` losses is under `target`, or None.

    One lucky batch dipping under the target says little; the trailing mean is what stays there.
    """
    losses = [loss for _, loss in curve]
    for i in range(window - 1, len(curve)):
        if sum(losses[i - window + 1:i + 1]) / window < target:
            return curve[i][0]
    return None


def adapter_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1e6
