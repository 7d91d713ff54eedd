"""What this GPU can do, measured: a large bf16 matrix product (TFLOP/s) and a large device-to-
device copy (GB/s, bytes read plus written). Efficiency figures (MFU, MBU) are fractions of these
measured ceilings, not of datasheet numbers, which clocks, power limits and drivers rarely reach.

Cached per GPU UUID and driver, so a run pays for it once (a few seconds).
"""

from __future__ import annotations

import json
import multiprocessing.context
import threading
from collections.abc import Callable
from pathlib import Path

MATMUL_N = 8192
COPY_BYTES = 2 * 1024**3
REPEATS = 10


def _events_ms(fn, repeats: int) -> list[float]:
    import torch

    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def measure(device: str = "cuda:0") -> dict:
    import torch

    a = torch.randn(MATMUL_N, MATMUL_N, device=device, dtype=torch.bfloat16)
    b = torch.randn(MATMUL_N, MATMUL_N, device=device, dtype=torch.bfloat16)
    for _ in range(3):  # warm-up: cuBLAS heuristics, clocks
        a @ b
    mm = sorted(_events_ms(lambda: a @ b, REPEATS))
    del a, b
    src = torch.empty(COPY_BYTES // 2, device=device, dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    dst.copy_(src)
    cp = sorted(_events_ms(lambda: dst.copy_(src), REPEATS))
    del src, dst
    torch.cuda.empty_cache()
    flops = 2 * MATMUL_N**3
    return {"matmul_tflops": flops / (mm[len(mm) // 2] / 1e3) / 1e12,
            "copy_gbps": 2 * COPY_BYTES / (cp[len(cp) // 2] / 1e3) / 1e9,
            "matmul_ms": mm, "copy_ms": cp, "method": f"median of {REPEATS} CUDA-event timings after warm-up"}


def cached(cache_dir: Path, uuid: str, driver: str, device: str = "cuda:0",
           context: multiprocessing.context.BaseContext | None = None, announce=lambda line: None) -> dict:
    """Measured once per GPU and driver; workers sharing a GPU wait for one measurement rather than
    measuring at the same time (each would see half the GPU). `context`: measured by a child started
    from it (the session's fork server, torch already imported), so that the caller never makes a
    CUDA context."""
    from filelock import FileLock

    path = cache_dir / f"calibration-{uuid}-{driver}.json"
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            announce("measuring this GPU's ceilings (matmul and copy; once per GPU and driver, a few seconds)")
            result = _measure_in_child(device, context, path) if context is not None else measure(device)
            path.write_text(json.dumps(result))
            return result


def _measure_in_child(device: str, context: multiprocessing.context.BaseContext, path: Path) -> dict:
    from bench.telemetry.processes import last_line, start_python

    out, log = path.with_suffix(".measuring"), path.with_suffix(".log")
    process = start_python(context, _measure_into, (device, str(out)), log)
    process.join()
    try:
        return json.loads(out.read_text())
    except (OSError, ValueError):
        raise RuntimeError(f"measuring the GPU's ceilings failed (exit code {process.exitcode}): "
                           f"{last_line(log) or 'no output'}; its log: {log}") from None
    finally:
        out.unlink(missing_ok=True)


def _measure_into(device: str, out: str) -> None:
    Path(out).write_text(json.dumps(measure(device)))


class Meanwhile:
    """A measurement made in a thread of its own while other work goes on (the GPU's ceilings while
    the first isolated child imports). What it says is kept for the thread that waits for it: the
    terminal is the main thread's."""

    def __init__(self, measure: Callable[[Callable[[str], None]], dict]) -> None:
        self.said: list[str] = []
        self.outcome: list[dict | Exception] = []
        self.thread = threading.Thread(target=self._run, args=(measure,), daemon=True, name="calibration")
        self.thread.start()

    def _run(self, measure: Callable[[Callable[[str], None]], dict]) -> None:
        try:
            self.outcome.append(measure(self.said.append))
        except Exception as exc:  # said where the run waits for it
            self.outcome.append(exc)

    def result(self) -> tuple[dict | Exception | None, list[str]]:
        """(what was measured, or the exception that stopped it; the lines it said), once done."""
        self.thread.join()
        return (self.outcome[0] if self.outcome else None), self.said
