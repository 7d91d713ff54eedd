"""What a GPU-hour costs: `--gpu-price-per-hour 2.5`, or a TOML table of prices by GPU name.

    [prices]
    "NVIDIA H100 80GB HBM3" = 2.5     # the exact name nvidia-smi shows
    "RTX 3090" = 0.021                # or a part of it

A table lets one command line serve a fleet of different GPUs; the longest key contained in the
GPU's name wins, so "A100-SXM4-80GB" beats "A100".
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from bench.errors import BenchError


def price_per_hour(spec: str | None, gpu_name: str) -> float | None:
    if spec is None:
        return None
    try:
        value = float(spec)
    except ValueError:
        return _from_table(Path(spec), gpu_name)
    if value < 0:
        raise BenchError(f"--gpu-price-per-hour {spec}: a price cannot be negative")
    return value


def _from_table(path: Path, gpu_name: str) -> float | None:
    if not path.is_file():
        raise BenchError(f"--gpu-price-per-hour {path}: neither a number nor a TOML price table")
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("prices")
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"--gpu-price-per-hour {path}: not valid TOML ({exc})") from None
    if not isinstance(table, dict) or not all(isinstance(v, (int, float)) for v in table.values()):
        raise BenchError(f"--gpu-price-per-hour {path}: needs a [prices] table of GPU name = USD per hour")
    matches = [key for key in table if key.lower() in gpu_name.lower()]
    return float(table[max(matches, key=len)]) if matches else None
