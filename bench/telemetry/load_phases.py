"""Where a model load's time goes, by phase: one extra load under cProfile, outside the timed ones.

A loader (transformers' from_pretrained, Unsloth's) is a black box with many versions; wrapping its
internals would break with each. The profiler instead attributes every function's own time
(cProfile's `tottime`) to the phase its code belongs to, by the module it lives in or the name of
the C function, so the phases add up to the profiled load by construction and the attribution
survives library upgrades. What no rule claims is "other" (Python-side model construction, the
loader's bookkeeping). The profiled load is slower than a timed one by the profiler's per-call
cost; both totals are recorded, so the reader sees by how much.
"""

from __future__ import annotations

import cProfile
import pstats
import time
from collections.abc import Callable

# (phase, substrings of a function's file, substrings of its name), first match wins
RULES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("first-call compilation", ("torch/_dynamo", "torch/_inductor", "torch/_functorch", "triton",
                                "unsloth_compiled_cache"), ("compile",)),
    ("quantization", ("bitsandbytes",), ("quantize",)),
    ("import and patching", ("<frozen importlib", "unsloth/", "unsloth_zoo/"), ("<module>", "__import__")),
    ("reading files", ("safetensors",), ("get_tensor", "get_slice", "safe_open", "load_file", "'read' of",
                                         "readinto", "posix.read", "mmap", "frombuffer", "from_file")),
    ("host to device", (), ("'to' of", "'cuda' of", "'copy_' of", "_to_copy", "synchronize", "'pin_memory'")),
)
OTHER = "other (model construction, loader bookkeeping)"
PHASES = tuple(rule[0] for rule in RULES) + (OTHER,)


def phase_of(filename: str, name: str) -> str:
    for phase, files, names in RULES:
        if any(f in filename for f in files) or any(n in name for n in names):
            return phase
    return OTHER


def profile_load(load: Callable[[], object]) -> tuple[float, dict[str, float], object]:
    """Run `load` under cProfile: (wall seconds, seconds per phase, what `load` returned)."""
    profiler = cProfile.Profile()
    started = time.perf_counter()
    result = profiler.runcall(load)
    wall = time.perf_counter() - started
    phases = dict.fromkeys(PHASES, 0.0)
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in pstats.Stats(profiler).stats.items():
        phases[phase_of(filename, name)] += tottime
    return wall, {k: round(v, 4) for k, v in phases.items()}, result
