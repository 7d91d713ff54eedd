"""Where a model load's time goes, by phase: one extra load, sampled, outside the timed ones.

A loader (transformers' from_pretrained, Unsloth's) is a black box with many versions; wrapping its
internals would break with each. Instead a thread samples the loading thread's Python stack every
few milliseconds and gives each sample to the phase of the innermost frame a rule claims (by the
file its code lives in, or for the weight copies by the line it is on). The phases are the
samples' shares of the profiled load's wall time, so they add up to it by construction.

Sampling, not cProfile: cProfile's per-call cost made a 5.8 s Unsloth load of gpt-oss-20b last
6.7 s under it (H100), 15% of time that belonged to no phase, while a sampler costs one stack walk
per interval. Time in C code counts for the Python line that called it, which is what names the
copy: transformers 5 reads each tensor from its safetensors file and moves it to the GPU in a pool
of threads (`tensor[...]` then `.to(device)`), while the loading thread converts, quantizes, or
waits for them; samples of it waiting are split between reading and copying as the pool's threads
were at that moment.
"""

from __future__ import annotations

import functools
import linecache
import sys
import threading
import time
from collections.abc import Callable
from types import CodeType, FrameType

INTERVAL_S = 0.005

COMPILE, QUANTIZE, IMPORT, READ, COPY, BUILD, OTHER = (
    "first-call compilation", "quantization", "import and patching", "reading files", "host to device",
    "model construction", "other (loader bookkeeping)")
PHASES = (IMPORT, BUILD, READ, COPY, QUANTIZE, COMPILE, OTHER)
WAIT = "waiting for the loader's threads"

# (phase, substrings of a frame's file, names of its function): a rule claims a frame when its file
# matches (or the rule names no file) and its function does (or the rule names none). Tried on each
# frame from the innermost outwards; the first frame claimed decides. A weight read's line tells a
# copy to the device from the read itself.
RULES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (COMPILE, ("torch/_dynamo", "torch/_inductor", "torch/_functorch", "triton/"), ()),
    (QUANTIZE, ("bitsandbytes/", "transformers/quantizers/", "transformers/integrations/bitsandbytes"), ()),
    (READ, ("safetensors/",), ()),
    (READ, (), ("_materialize_copy", "load_state_dict", "safe_load_file")),
    (COPY, (), ("set_module_tensor_to_device",)),
    (WAIT, ("concurrent/futures/",), ()),
    (IMPORT, ("<frozen importlib",), ()),
    (IMPORT, (), ("<module>",)),
    (BUILD, ("transformers/models/", "torch/nn/modules/"), ("__init__",)),
    (BUILD, ("transformers/initialization", "torch/nn/init"), ()),
    (BUILD, (), ("_init_weights", "init_weights", "_initialize_weights")),
    (OTHER, ("transformers/", "accelerate/", "peft/"), ()),
    (IMPORT, ("unsloth/", "unsloth_zoo/", "unsloth_compiled_cache"), ()),  # Unsloth's patching around the load
)
COPY_CALLS = (".to(", ".cuda(", ".copy_(", "non_blocking")


def claim(filename: str, name: str, line: str = "") -> str | None:
    """The phase one frame belongs to, or None when no rule claims it (`line`: its current source
    line, which tells a weight's copy to the device from its read)."""
    for phase, files, names in RULES:
        if (not files or any(f in filename for f in files)) and (not names or name in names):
            return COPY if phase == READ and any(call in line for call in COPY_CALLS) else phase
    return None


def phase_of(frame: FrameType | None, outermost: FrameType | None = None) -> str:
    """The phase of one sampled stack: its innermost frame, up to `outermost` (the profiler's own:
    what called the load is not the load), that a rule claims."""
    while frame is not None and frame is not outermost:
        code = frame.f_code
        phase = _claimed(code)
        if phase == READ:
            return _line_claimed(code, frame.f_lineno)
        if phase is not None:
            return phase
        frame = frame.f_back
    return OTHER


@functools.cache
def _claimed(code: CodeType) -> str | None:
    """Per code object, once: a sample then costs a dictionary lookup per frame, not the rules."""
    return claim(code.co_filename, code.co_name)


@functools.cache
def _line_claimed(code: CodeType, lineno: int) -> str:
    return claim(code.co_filename, code.co_name, linecache.getline(code.co_filename, lineno)) or OTHER


class _Sampler(threading.Thread):
    """Samples one thread's stack (and, while it waits for them, the other threads') until stopped."""

    def __init__(self, target_id: int, outermost: FrameType) -> None:
        super().__init__(daemon=True, name="load-phase-sampler")
        self.target_id = target_id
        self.outermost = outermost
        self.counts = dict.fromkeys(PHASES, 0.0)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(INTERVAL_S):
            frames = sys._current_frames()
            phase = phase_of(frames.get(self.target_id), self.outermost)
            if phase != WAIT:
                self.counts[phase] += 1
                continue
            helpers = [phase_of(f) for tid, f in frames.items() if tid not in (self.target_id, self.ident)]
            busy = [p for p in helpers if p in (READ, COPY, QUANTIZE)] or [READ]
            for p in busy:
                self.counts[p] += 1 / len(busy)


def profile_load(load: Callable[[], object]) -> tuple[float, dict[str, float], object]:
    """Run `load` while sampling it: (wall seconds, seconds per phase, what `load` returned)."""
    sampler = _Sampler(threading.get_ident(), sys._getframe())
    sampler.start()
    started = time.perf_counter()
    try:
        result = load()
    finally:
        wall = time.perf_counter() - started
        sampler.stopped.set()
        sampler.join()
    total = sum(sampler.counts.values())
    if not total:  # faster than one interval
        return wall, {p: round(wall if p == OTHER else 0.0, 4) for p in PHASES}, result
    return wall, {p: round(wall * n / total, 4) for p, n in sampler.counts.items()}, result
