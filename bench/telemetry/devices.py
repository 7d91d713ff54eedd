"""Which device a run uses, pinned before torch initializes CUDA, and what NVML says about GPUs.

GPU indices are nvidia-smi's (PCI bus order); CUDA_DEVICE_ORDER=PCI_BUS_ID makes CUDA agree, and
CUDA_VISIBLE_DEVICES pins the process, so inside it the chosen GPU is always cuda:0.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchError

GB = 1e9  # bytes in a gigabyte, as nvidia-smi and the seed count memory


@contextlib.contextmanager
def nvml() -> Iterator[Any]:
    """pynvml, initialized for the block and shut down after it; None where there is no NVIDIA
    driver or no nvidia-ml-py (the CPU, a container without the driver)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no library, no driver: there is no GPU to talk to
        yield None
        return
    try:
        yield pynvml
    finally:
        pynvml.nvmlShutdown()


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    uuid: str
    memory_gb: float
    driver: str


def nvml_gpus() -> list[GpuInfo]:
    """Every GPU NVML sees, in nvidia-smi's order; empty without a driver or nvidia-ml-py."""
    with nvml() as pynvml:
        if pynvml is None:
            return []
        driver = pynvml.nvmlSystemGetDriverVersion()
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            gpus.append(GpuInfo(i, _text(pynvml.nvmlDeviceGetName(h)), _text(pynvml.nvmlDeviceGetUUID(h)),
                                pynvml.nvmlDeviceGetMemoryInfo(h).total / GB, _text(driver)))
        return gpus


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_gpu_option(value: str | None, available: list[GpuInfo]) -> list[int] | None:
    """`--gpu` as GPU indices; None means the CPU. No value: GPU 0 if there is one."""
    if value is None:
        return [0] if available else None
    if value.strip().lower() == "cpu":
        return None
    every = value.strip().lower() == "all"
    indices = []
    for part in [] if every else value.split(","):
        if not part.strip().isdigit():
            raise BenchError(f"--gpu {value}: '{part.strip()}' is not a GPU index; use e.g. --gpu 0, --gpu 0,1 or --gpu all")
        indices.append(int(part))
    if not available:
        raise BenchError(f"--gpu {value}: no NVIDIA GPU is visible on this machine (no driver or NVML); "
                         "drop --gpu to run on the CPU")
    if every:
        return [g.index for g in available]
    known = {g.index for g in available}
    missing = [i for i in indices if i not in known]
    if missing:
        raise BenchError(f"--gpu {value}: no GPU with index {missing[0]}; this machine has "
                         f"{', '.join(f'{g.index} ({g.name})' for g in available)}")
    return indices


def pin(index: int | None) -> str:
    """Restrict this process to one GPU (or none) and return the torch device string to use."""
    if index is None:
        return "cpu"
    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    os.environ["CUDA_VISIBLE_DEVICES"] = str(index)
    return "cuda:0"


_UNREAD = object()


def torch_has_cuda() -> bool:
    """Whether torch can use the GPU NVML has seen, without importing torch where that can be
    avoided: its version file says whether it was built for CUDA. The parent of isolated children
    never runs torch itself, and `import torch` costs it 4-5 s on an H100 host, at the start of
    every run. Anything unreadable there: torch is imported and asked."""
    if (built := _version_file_cuda()) is not _UNREAD:
        return built is not None
    import torch

    return torch.cuda.is_available()


def torch_cuda_version() -> str | None:
    """The CUDA version torch was built for (None: a CPU or ROCm build), read as `torch_has_cuda` does."""
    if (built := _version_file_cuda()) is not _UNREAD:
        return built
    import torch

    return torch.version.cuda


def _version_file_cuda():
    """torch/version.py's `cuda`: a version string or None; `_UNREAD` where the file says nothing
    or torch is imported already (then asking it costs nothing)."""
    if "torch" in sys.modules:
        return _UNREAD
    spec = importlib.util.find_spec("torch")
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        try:
            text = (Path(location) / "version.py").read_text(encoding="utf-8")
        except OSError:
            continue
        found = re.search(r"^cuda\s*(?::[^=\n]*)?=\s*(\S+)\s*$", text, re.MULTILINE)
        if found:
            value = found.group(1)
            return None if value == "None" else value.strip("'\"") or None
    return _UNREAD


def process_memory_gb(index: int, pid: int) -> float | None:
    """What NVML counts against one process on one GPU (its context, its allocator's cache, its
    tensors); None where NVML cannot say (no driver, or a container that hides other pids)."""
    with nvml() as pynvml:
        if pynvml is None:
            return None
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            used = [p.usedGpuMemory for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle) if p.pid == pid]
        except pynvml.NVMLError:
            return None
        return used[0] / GB if used and used[0] is not None else None


def free_memory_gb(index: int) -> float | None:
    """What NVML says is free on one GPU now; None where NVML cannot say."""
    with nvml() as pynvml:
        if pynvml is None:
            return None
        try:
            return pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index)).free / GB
        except pynvml.NVMLError:
            return None
