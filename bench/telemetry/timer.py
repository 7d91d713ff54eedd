"""One device-aware timer: synchronize the device, then read the host's monotonic clock.

CUDA work is asynchronous, so a host clock read without a synchronize measures launch time, not
work. Synchronizing before both reads makes perf_counter measure the device's work; for the
multi-millisecond regions timed here its resolution is far finer than the noise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


def synchronize(device: str) -> None:
    """Wait for all queued work on `device` ("cuda", "cuda:N" or "cpu")."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


@dataclass
class Timer:
    """`with Timer(device) as t: ...` then `t.elapsed` in seconds; `t.samples` keeps every use."""

    device: str = "cpu"
    elapsed: float = 0.0
    samples: list[float] = field(default_factory=list)
    _start: float = 0.0

    def __enter__(self) -> "Timer":
        synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        synchronize(self.device)
        self.elapsed = time.perf_counter() - self._start
        self.samples.append(self.elapsed)
