"""A/B helper: this session's gc.freeze after the engine's import turned off (in-process runs only)."""
import bench.telemetry.memory as memory

memory.freeze_imports = lambda: None
