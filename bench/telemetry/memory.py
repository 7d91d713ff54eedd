"""Peak memory of a region, from torch's caching allocator on CUDA.

torch's numbers (allocated: live tensors; reserved: what the caching allocator holds) are not what
nvidia-smi shows (NVML 'used' adds the CUDA context and other processes); the NVML sampler reports
that one, and the two are kept under different metric names.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass

from bench.telemetry.devices import GB



def freeze_imports() -> None:
    """Put what is alive now (the libraries just imported) out of the collector's reach.

    A full collection walks every tracked object: after torch, transformers, peft and trl about
    460,000 of them, 0.23 s on the 2-core CPU machine. Every case start and every unload runs one,
    and the collector's own full passes land inside timed rounds. Modules, classes and functions live
    as long as the process, so nothing frozen here would ever have been collected; what the cases
    create afterwards is collected as before. (The fork server freezes after its imports: its
    children inherit that.)"""
    gc.collect()  # what importing left as garbage is freed, not frozen
    gc.freeze()


class CollectorTime:
    """The garbage collector's seconds and full passes while inside (`gc.callbacks`): a load makes
    many long-lived objects, so full collections walking every object not frozen land inside it,
    and what is frozen (the harness's own objects; a fork server's imports) decides their cost.
    The cross-check's plain script measures the same beside its loads."""

    def __enter__(self) -> "CollectorTime":
        self.seconds, self.full_passes, self._started = 0.0, 0, None
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self.seconds += time.perf_counter() - self._started
            self.full_passes += info["generation"] == 2
            self._started = None


def release_garbage(device: str) -> None:
    """Collect unreachable objects and return cached blocks to the device.

    A finished case leaves its trainer and model behind as cyclic garbage (trainer, callbacks,
    accelerator and model refer to each other); until the collector runs, their GPU tensors stay
    allocated and the next case's peak would include them. Every case starts from here.
    """
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


@dataclass
class MemoryTracker:
    device: str = "cpu"
    allocated_start_gb: float | None = None
    allocated_peak_gb: float | None = None
    reserved_peak_gb: float | None = None

    def __enter__(self) -> "MemoryTracker":
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.allocated_start_gb = torch.cuda.memory_allocated() / GB
        return self

    def __exit__(self, *exc) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            self.allocated_peak_gb = torch.cuda.max_memory_allocated() / GB
            self.reserved_peak_gb = torch.cuda.max_memory_reserved() / GB


def resident_gb(device: str) -> float:
    """Memory in use by this process: torch-allocated on CUDA, resident set size on the CPU."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        return torch.cuda.memory_allocated() / GB
    import psutil

    return psutil.Process().memory_info().rss / GB
