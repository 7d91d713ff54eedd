"""The GPU's cumulative energy counter (NVML, Volta and later), read around a region.

Reading a counter before and after is exact for the region and costs microseconds, so it can
bracket each timed round; the background sampler integrates power instead where no counter exists.
"""

from __future__ import annotations


class EnergyCounter:
    def __init__(self, device: str) -> None:
        self._handle = None
        if not device.startswith("cuda"):
            return
        try:
            import pynvml

            from bench.telemetry.sampler import gpu_uuid

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByUUID(gpu_uuid())
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except Exception:  # no NVML, or no energy counter on this GPU: energy is then unknown
            self._handle = None

    def joules(self) -> float | None:
        """Energy since the driver loaded, in joules; None where there is no counter."""
        if self._handle is None:
            return None
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1000.0
