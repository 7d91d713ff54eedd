"""What the rest of the host did while a case ran.

A host-bound case (a launch-bound decode, a Python-heavy training step) runs slower beside a busy
neighbour: another job, or an isolated child importing its engine ahead of its turn (Unsloth's
import is 20-45 s of CPU and a CUDA context on the same GPU). The case's own figures cannot show
that; this does: the host's busy CPU time minus this process tree's, over the case's wall time,
in cores, and on a virtual machine the share of its CPU time the hypervisor gave to others
(steal). A diagnostic beside the figures, never a judgement of them.

The process tree is this process, the children it waited for, and its live descendants (compile
workers, say). Two edges, both rare inside a case: a descendant that exits unwaited leaves its time
among the others', one waited for counts whole, its time before the region included.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Reading:
    t: float  # perf_counter seconds
    busy_s: float  # the host's busy CPU time, all cores (idle, iowait and steal excluded)
    steal_s: float | None  # CPU time the hypervisor gave to other machines; None where not reported
    own_s: dict[int, float]  # CPU time by pid of this process tree (this pid: waited children included)


@dataclass(frozen=True)
class HostLoad:
    wall_s: float
    others_cpu_s: float
    steal_s: float | None
    cores: int

    @property
    def others_cores(self) -> float:
        """Cores' worth of CPU the others used on average over the region."""
        return self.others_cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def steal_pct(self) -> float | None:
        if self.steal_s is None or self.wall_s <= 0 or self.cores <= 0:
            return None
        return 100 * self.steal_s / (self.wall_s * self.cores)


def between(start: Reading, end: Reading, cores: int) -> HostLoad:
    """The load of the others from two readings: a pid of the tree counts from its first reading
    (from zero when it was born in between)."""
    own = sum(cpu - start.own_s.get(pid, 0.0) for pid, cpu in end.own_s.items())
    steal = None if start.steal_s is None or end.steal_s is None else max(0.0, end.steal_s - start.steal_s)
    return HostLoad(end.t - start.t, max(0.0, end.busy_s - start.busy_s - own), steal, cores)


def read_host() -> Reading:
    import psutil

    cpu = psutil.cpu_times()
    busy = sum(getattr(cpu, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq"))
    me = psutil.Process()
    times = me.cpu_times()
    own = {me.pid: times.user + times.system + times.children_user + times.children_system}
    for child in me.children(recursive=True):
        try:
            t = child.cpu_times()
        except psutil.Error:  # exited since it was listed
            continue
        own[child.pid] = t.user + t.system
    return Reading(time.perf_counter(), busy, getattr(cpu, "steal", None), own)


class HostLoadTracker:
    """`with HostLoadTracker() as tracker: ...` then `tracker.load` (None where psutil cannot read
    the host's CPU times)."""

    def __init__(self, read: Callable[[], Reading] = read_host, cores: int | None = None) -> None:
        self.read, self.cores = read, cores or os.cpu_count() or 1
        self.load: HostLoad | None = None
        self._start: Reading | None = None

    def __enter__(self) -> HostLoadTracker:
        self._start = self._try_read()
        return self

    def __exit__(self, *exc) -> None:
        end = self._try_read()
        if self._start is not None and end is not None:
            self.load = between(self._start, end, self.cores)

    def _try_read(self) -> Reading | None:
        import psutil

        try:
            return self.read()
        except (OSError, psutil.Error):  # a container hiding the host's counters
            return None
