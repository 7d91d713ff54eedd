"""Measuring devices: synchronizing timers, memory peaks, NVML and process samplers."""

from bench.telemetry.timer import Timer, synchronize
from bench.telemetry.memory import MemoryTracker
from bench.telemetry.sampler import sampler_for

__all__ = ["Timer", "synchronize", "MemoryTracker", "sampler_for"]
