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
