"""Background samplers: NVML on a GPU (memory, power, utilization, energy), psutil on the CPU.

Each is a context manager running a daemon thread at `interval` seconds; on exit it stops and
summarizes. Energy comes from NVML's total-energy counter where the GPU has one, otherwise from
integrating the sampled power (and the summary says which).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field

from bench.telemetry.devices import GB



@dataclass
class Usage:
    """What a sampler saw over one region; `series` rows are (t_s, memory_gb, power_w, util_pct)."""

    source: str
    duration_s: float = 0.0
    peak_memory_gb: float | None = None
    mean_memory_gb: float | None = None
    peak_power_w: float | None = None
    mean_power_w: float | None = None
    mean_util_pct: float | None = None
    energy_j: float | None = None
    energy_source: str | None = None
    # NVML's count for this process alone (its context, allocator cache, tensors): unlike the
    # device's used memory it excludes other processes (a waiting isolated child, a neighbour)
    process_peak_memory_gb: float | None = None
    series: list[tuple[float, float, float | None, float | None]] = field(default_factory=list)

    def as_dict(self, with_series: bool = True) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "series"}
        if with_series:
            d["series"] = [list(row) for row in self.series]
        return d


class _Sampler:
    interval = 0.05

    def __init__(self) -> None:
        self.usage = Usage(source=self.source)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    source = "none"

    def _sample(self) -> tuple[float, float | None, float | None]:
        raise NotImplementedError

    def _loop(self) -> None:
        while not self._stop.is_set():
            mem, power, util = self._sample()
            self.usage.series.append((time.perf_counter() - self._t0, mem, power, util))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t0 = time.perf_counter()
        self._begin()
        self._thread = threading.Thread(target=self._loop, name=f"{self.source}-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        mem, power, util = self._sample()
        self.usage.series.append((time.perf_counter() - self._t0, mem, power, util))
        self.usage.duration_s = time.perf_counter() - self._t0
        self._summarize()
        self._end()

    def _begin(self) -> None:
        pass

    def _end(self) -> None:
        pass

    def _summarize(self) -> None:
        u = self.usage
        mems = [r[1] for r in u.series if r[1] is not None]
        powers = [r[2] for r in u.series if r[2] is not None]
        utils = [r[3] for r in u.series if r[3] is not None]
        if mems:
            u.peak_memory_gb, u.mean_memory_gb = max(mems), sum(mems) / len(mems)
        if powers:
            u.peak_power_w, u.mean_power_w = max(powers), sum(powers) / len(powers)
            if u.energy_j is None and len(u.series) > 1:
                pts = [(r[0], r[2]) for r in u.series if r[2] is not None]
                u.energy_j = sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(pts, pts[1:]))
                u.energy_source = "integrated power samples"
        if utils:
            u.mean_util_pct = sum(utils) / len(utils)


class ProcessSampler(_Sampler):
    """CPU fallback: a process's resident memory (RSS) and CPU utilization (this one, or a server
    the harness started)."""

    source = "psutil"

    def __init__(self, pid: int | None = None) -> None:
        super().__init__()
        self.pid = pid

    def _begin(self) -> None:
        import psutil

        self._proc = psutil.Process(self.pid)
        self._proc.cpu_percent(None)

    def _sample(self):
        return self._proc.memory_info().rss / GB, None, self._proc.cpu_percent(None)


class NvmlSampler(_Sampler):
    """NVML on one GPU, found by UUID so CUDA_VISIBLE_DEVICES remapping cannot point it elsewhere.
    The process whose own memory it counts is this one, or `pid` (a server)."""

    source = "nvml"

    def __init__(self, uuid: str, pid: int | None = None) -> None:
        super().__init__()
        self.uuid = uuid
        self.pid = pid

    def _begin(self) -> None:
        from bench.telemetry.devices import nvml

        self._stack = contextlib.ExitStack()
        self._nvml = self._stack.enter_context(nvml())
        self._h = self._nvml.nvmlDeviceGetHandleByUUID(self.uuid)
        self._pid = self.pid or os.getpid()
        self._e0 = self._energy_mj()

    def _energy_mj(self) -> int | None:
        try:
            return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._h)
        except self._nvml.NVMLError:
            return None

    def _sample(self):
        nv = self._nvml
        mem = nv.nvmlDeviceGetMemoryInfo(self._h).used / GB
        own = self._own_memory_gb()
        if own is not None:
            self.usage.process_peak_memory_gb = max(own, self.usage.process_peak_memory_gb or 0.0)
        try:
            power = nv.nvmlDeviceGetPowerUsage(self._h) / 1000.0
        except nv.NVMLError:
            power = None
        try:
            util = float(nv.nvmlDeviceGetUtilizationRates(self._h).gpu)
        except nv.NVMLError:
            util = None
        return mem, power, util

    def _own_memory_gb(self) -> float | None:
        """None where NVML does not list this process (a container that hides host pids)."""
        try:
            procs = self._nvml.nvmlDeviceGetComputeRunningProcesses(self._h)
        except self._nvml.NVMLError:
            return None
        used = [p.usedGpuMemory for p in procs if p.pid == self._pid and p.usedGpuMemory is not None]
        return used[0] / GB if used else None

    def _end(self) -> None:
        e1 = self._energy_mj()
        if self._e0 is not None and e1 is not None:
            self.usage.energy_j = (e1 - self._e0) / 1000.0
            self.usage.energy_source = "nvml energy counter"
        self._stack.close()


def gpu_uuid() -> str | None:
    """The NVML-style UUID of torch's current CUDA device, or None on the CPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    uuid = str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
    return uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"


def sampler_for(device: str, pid: int | None = None, uuid: str | None = None) -> _Sampler:
    """NVML for a CUDA device when nvidia-ml-py works, psutil otherwise: decided here, once. With
    `pid` and `uuid` (another process, on a known GPU) this process never touches CUDA."""
    if device.startswith("cuda"):
        uuid = uuid or gpu_uuid()
        from bench.telemetry.devices import nvml

        with nvml() as pynvml:
            if uuid and pynvml is not None:  # NVML missing or broken: fall back rather than lose the case
                return NvmlSampler(uuid, pid)
    return ProcessSampler(pid)
