"""Where a round's time goes: one extra round under torch.profiler, outside the timed ones.

A decode rate at 1% of the bandwidth bound says how far from the limit a case is, not why. The
profiled round answers the why with three numbers: how much of the round's wall time the GPU was
executing kernels (busy fraction: low means the host is the bottleneck), how many kernels the host
launched per decode step or optimizer step (launch-bound work has thousands of tiny kernels), and
the kernels (or, on the CPU, the operators) that took the most time (dequantization, attention,
matrix products). The profiler slows the round it watches, so it is never one of the timed rounds.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

TOP = 8
# Host-side calls that put work on the GPU (runtime and driver API, graphs).
LAUNCH_CALLS = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx",
                "cudaLaunchCooperativeKernel", "cudaGraphLaunch")


@dataclass
class RoundProfile:
    wall_s: float
    busy_s: float | None  # union of kernel intervals; None without a GPU
    kernels: int | None  # kernels executed on the GPU
    launches: int | None  # host launch calls
    top: list[dict] = field(default_factory=list)  # {"name", "ms", "share", "calls"}, by time
    what: str = "kernels"  # "kernels" (GPU time) or "operators" (CPU self time)

    @property
    def busy_fraction(self) -> float | None:
        return None if self.busy_s is None or self.wall_s <= 0 else min(1.0, self.busy_s / self.wall_s)

    def summary(self, per: float, unit: str) -> dict:
        """For a record's extra: the figures and the top list, launches normalized per `unit`."""
        return {"wall_s": round(self.wall_s, 4), "busy_fraction": self.busy_fraction,
                "kernels": self.kernels, "launches": self.launches,
                f"launches_per_{unit}": None if self.launches is None or per <= 0 else self.launches / per,
                "top": self.top, "top_of": self.what}


def _union_s(intervals: list[tuple[float, float]]) -> float:
    """Total time covered by (start, end) intervals in microseconds, overlaps counted once."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total / 1e6


def profile_round(fn: Callable[[], object], device: str) -> RoundProfile:
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize()
    with profile(activities=activities) as prof:
        started = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - started
    if not cuda:
        return RoundProfile(wall, None, None, None, _top_operators(prof, wall), "operators")
    return _gpu_round(wall, _raw_events(prof), DeviceType.CUDA)


def _gpu_round(wall: float, events: list, gpu) -> RoundProfile:
    """The figures from kineto's flat events: those on the GPU are kernels (and copies), host
    events named like a launch call are launches."""
    by_name: dict[str, list[float]] = defaultdict(list)  # kernel name -> durations in us
    intervals: list[tuple[float, float]] = []
    launches = 0
    for event in events:
        if event.device_type() == gpu:
            start, end = event.start_ns() / 1e3, event.end_ns() / 1e3
            by_name[event.name()].append(end - start)
            intervals.append((start, end))
        elif event.name() in LAUNCH_CALLS:
            launches += 1
    total = sum(sum(v) for v in by_name.values()) or 1.0
    top = sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:TOP]
    return RoundProfile(wall, _union_s(intervals), len(intervals), launches,
                        [{"name": name[:120], "ms": round(sum(t) / 1e3, 3), "share": round(sum(t) / total, 4),
                          "calls": len(t)} for name, t in top])


def _raw_events(prof) -> list:
    """Kineto's flat event list. `prof.events()` would first build torch's tree of FunctionEvents,
    which costs about 50 us per event (14 s for 300,000 events on a 2-core CPU, against 0.6 s to
    walk the flat list): on an H100 it was about 17 s of every inference case of the 20B replica
    (2,085 launches per token), whose cost beyond its timed and profiled rounds is now 2.3-3.7 s."""
    return [event for event in prof.profiler.kineto_results.events()
            if not getattr(event, "is_hidden_event", lambda: False)()]


def _top_operators(prof, wall: float) -> list[dict]:
    rows = sorted(prof.key_averages(), key=lambda a: -a.self_cpu_time_total)[:TOP]
    return [{"name": a.key[:120], "ms": round(a.self_cpu_time_total / 1e3, 3),
             "share": round(a.self_cpu_time_total / 1e6 / wall, 4) if wall > 0 else None, "calls": a.count}
            for a in rows]
