"""Where the harness keeps what it builds: the tiny model, replicas and their quantized copies,
each GPU's measured ceilings, and training sets in the forms the trainers take. $BENCH_CACHE_DIR,
else the user's cache directory."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    if os.environ.get("BENCH_CACHE_DIR"):
        return Path(os.environ["BENCH_CACHE_DIR"])
    import platformdirs

    return Path(platformdirs.user_cache_dir("gpt-oss-bench"))


def prompt_completion_sets() -> Path:
    """Training rows rendered through a chat template (`bench.data.TrainingData`)."""
    return cache_root() / "prompt-completion-sets"


# Where torch's, Triton's and Unsloth's compilers keep what they compiled, by default scattered over
# /tmp, ~/.triton, ~/.cache/unsloth and an `unsloth_compiled_cache/` in the working directory. The
# leaf `unsloth_compiled_cache` keeps Unsloth's name: the load breakdown knows its frames by it.
# Unsloth clears TORCHINDUCTOR_CACHE_DIR when it patches (inductor's cache then stays in /tmp); its
# mega-cache carries inductor's artifacts instead.
COMPILE_CACHES = {"TORCHINDUCTOR_CACHE_DIR": "inductor", "TRITON_CACHE_DIR": "triton",
                  "UNSLOTH_COMPILE_LOCATION": "unsloth_compiled_cache", "UNSLOTH_MEGA_CACHE_DIR": "unsloth-mega-cache"}


def keep_compile_caches() -> None:
    """Points the compilers' caches into the cache root, for this process and every one it starts,
    where a variable is not set already. A 20B training case's first step took 56 s on empty caches
    and 12-16 s on warm ones (`docs/several-gpus.md`), so a CI job that keeps
    one directory between jobs keeps the compilation with the prepared model; and a run leaves no
    `unsloth_compiled_cache/` in the directory it was started from. What is timed never includes
    compilation (it is the untimed warm-up), so no figure depends on whether these caches were warm."""
    root = cache_root() / "compile"
    for variable, leaf in COMPILE_CACHES.items():
        os.environ.setdefault(variable, str(root / leaf))
