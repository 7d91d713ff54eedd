"""The GPU's cumulative energy counter (NVML, Volta and later), read around a region.

Reading a counter before and after is exact for the region and costs microseconds, so it can
bracket each timed round; the background sampler integrates power instead where no counter exists.
"""

from __future__ import annotations

import contextlib


class EnergyCounter:
    """`with EnergyCounter(device) as energy: ... energy.joules()`: NVML stays open for the block."""

    def __init__(self, device: str) -> None:
        self.device = device
        self._handle = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "EnergyCounter":
        if not self.device.startswith("cuda"):
            return self
        from bench.telemetry.devices import nvml
        from bench.telemetry.sampler import gpu_uuid

        self._nvml = self._stack.enter_context(nvml())
        if self._nvml is None:
            return self
        try:
            self._handle = self._nvml.nvmlDeviceGetHandleByUUID(gpu_uuid())
            self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except self._nvml.NVMLError:  # no energy counter on this GPU: energy is then unknown
            self._handle = None
        return self

    def __exit__(self, *exc) -> None:
        self._handle = None
        self._stack.close()

    def joules(self) -> float | None:
        """Energy since the driver loaded, in joules; None where there is no counter."""
        if self._handle is None:
            return None
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1000.0
