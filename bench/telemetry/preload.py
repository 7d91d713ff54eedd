"""What the fork server of `bench.telemetry.processes` imports: the libraries named in
$BENCH_PRELOAD, without starting CUDA, so that the children forked from it can.

Some libraries ask the GPU questions as they are imported. torchao (which transformers and peft
import when it is installed, as it is beside Unsloth) reads the device's compute capability and
asks torch whether Triton runs on it; both start CUDA in torch, and a process forked after that
cannot use CUDA. While the server imports, those two questions are answered from NVML, which
gives the same answers without a CUDA context: the capability of the GPU this process is pinned
to, and Triton where its package is installed and the GPU is sm_70 or newer (torch's own rule).
Then torch's functions are put back and its cached answer forgotten, so a child asks torch again.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator

from bench.telemetry.memory import freeze_imports
from bench.telemetry.processes import PRELOAD_ENV


def _pinned_capability() -> tuple[int, int] | None:
    """The compute capability of the GPU in CUDA_VISIBLE_DEVICES (or GPU 0), from NVML; None
    without a GPU or NVML."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no driver, no library: no GPU to start either
        return None
    try:
        handle = (pynvml.nvmlDeviceGetHandleByUUID(visible) if visible.startswith("GPU-")
                  else pynvml.nvmlDeviceGetHandleByIndex(int(visible)))
        return tuple(pynvml.nvmlDeviceGetCudaComputeCapability(handle))
    except (ValueError, pynvml.NVMLError):
        return None
    finally:
        pynvml.nvmlShutdown()


@contextlib.contextmanager
def answered_from_nvml() -> Iterator[None]:
    capability = _pinned_capability()
    if capability is None:
        yield
        return
    import torch.cuda
    import torch.utils._triton as triton_utils

    saved = torch.cuda.get_device_capability, triton_utils.has_triton
    triton = triton_utils.has_triton_package() and capability[0] >= 7
    torch.cuda.get_device_capability = lambda device=None: capability
    triton_utils.has_triton = lambda: triton
    try:
        yield
    finally:
        torch.cuda.get_device_capability, triton_utils.has_triton = saved
        getattr(saved[1], "cache_clear", lambda: None)()


def preload(names: list[str]) -> None:
    """Never raises: the fork server dies on any error but ImportError, and with it every child.
    What fails here the child imports itself, and fails there with the case that needed it."""
    if not names:
        return
    try:
        with answered_from_nvml():
            for name in names:
                try:
                    importlib.import_module(name)
                except ImportError:  # an optional library
                    pass
    except Exception as exc:  # a torch without these functions, a library that fails to import
        print(f"gpt-oss bench: the fork server preloaded less than asked: {type(exc).__name__}: {exc}",
              file=sys.stderr)
    freeze_imports()


preload([name for name in os.environ.get(PRELOAD_ENV, "").split(",") if name])
