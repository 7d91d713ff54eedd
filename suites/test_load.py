"""Model load time, cold and warm, and memory after load.

cold: the first load in a fresh process, which has imported only what a user's script imports
first (`from unsloth import FastLanguageModel`; `from transformers import AutoModelForCausalLM`):
the modules the engine imports on first use are part of it, as they are of a user's first load.
warm: loaded again in the same process. The first load on a machine, with empty compile caches,
is measured by the cross-check's plain script (`bench crosscheck`): `load_s` with cache "first".
"""

import statistics
import sys

import pytest

from bench.telemetry import Timer
from bench.telemetry.rounds import run_rounds
from bench.telemetry.load_phases import profile_load
from bench.telemetry.memory import CollectorTime, resident_gb
from bench.telemetry.timer import synchronize

pytestmark = pytest.mark.suite("load")


def test_load(bench, backend, prepared, case, benchmark, cache):
    if cache == "cold" and backend.loads:
        pytest.skip("a model was already loaded in this process, so no cold load can be measured")
    rounds = 1 if cache == "cold" else bench.profile.load_rounds
    timer, memory_gb = Timer(bench.device), []
    holder: list = []

    def release():
        with case.phase("unload"):
            while holder:
                backend.unload(holder.pop())

    imported: list[int] = []
    collector: list[CollectorTime] = []

    def load():
        before, modules = resident_gb(bench.device), len(sys.modules)
        with CollectorTime() as collected, timer:
            holder.append(backend.load(bench.source))
        imported.append(len(sys.modules) - modules)
        collector.append(collected)
        memory_gb.append(resident_gb(bench.device) - before if bench.device == "cpu" else resident_gb(bench.device))

    benchmark.group = "load"
    run_rounds(benchmark, load, setup=release, rounds=rounds,
               until=bench.workload.precision(lambda: timer.samples) if cache == "warm" else None)
    case.add_timed_work(sum(timer.samples))
    info = holder[0].info if holder else {}
    release()
    case.timed("load_s", timer.samples, extra={"backend_info": info, "import_s": bench.timings.get(
        f"import_{bench.backend_name}_s") if cache == "cold" else None, "modules_imported": max(imported),
        # beside the plain script's, in a cross-check
        "torch_threads": sys.modules["torch"].get_num_threads(), "gc_s": [c.seconds for c in collector],
        "gc_full_passes": [c.full_passes for c in collector]})
    if cache == "warm":  # where the time goes: one more load, sampled, not timed
        def profiled_load():
            loaded = backend.load(bench.source)
            synchronize(bench.device)
            return loaded

        with case.phase("profiled load"):
            wall, phases, loaded = profile_load(profiled_load)
            backend.unload(loaded)
        case("load_profiled_s", sum(phases.values()), extra={"phases": phases, "profiled_wall_s": wall,
                                                             "timed_median_s": statistics.median(timer.samples)})
    case("load_memory_gb", max(memory_gb), samples=memory_gb)
    benchmark.extra_info.update({"load_s": timer.samples, "load_memory_gb": max(memory_gb)})
