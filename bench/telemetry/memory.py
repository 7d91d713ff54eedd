"""Peak memory of a region, from torch's caching allocator on CUDA.

torch's numbers (allocated: live tensors; reserved: what the caching allocator holds) are not what
nvidia-smi shows (NVML 'used' adds the CUDA context and other processes); the NVML sampler reports
that one, and the two are kept under different metric names.
"""

from __future__ import annotations

from dataclasses import dataclass

GB = 1e9


@dataclass
class MemoryTracker:
    device: str = "cpu"
    allocated_peak_gb: float | None = None
    reserved_peak_gb: float | None = None
    allocated_end_gb: float | None = None

    def __enter__(self) -> "MemoryTracker":
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            self.allocated_peak_gb = torch.cuda.max_memory_allocated() / GB
            self.reserved_peak_gb = torch.cuda.max_memory_reserved() / GB
            self.allocated_end_gb = torch.cuda.memory_allocated() / GB


def resident_gb(device: str) -> float:
    """Memory in use by this process: torch-allocated on CUDA, resident set size on the CPU."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        return torch.cuda.memory_allocated() / GB
    import psutil

    return psutil.Process().memory_info().rss / GB
