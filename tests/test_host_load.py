"""What the rest of the host did beside a case: others' CPU in cores, its own process tree left out."""

import os
import signal
import subprocess
import sys
import time

import pytest

from bench.telemetry.host_load import HostLoadTracker, Reading, between, read_host


def reading(t, busy, own, steal=None):
    return Reading(t, busy, steal, own)


def test_the_others_are_the_host_busy_time_less_this_process_tree():
    start = reading(10.0, 100.0, {1: 5.0, 2: 1.0}, steal=3.0)
    end = reading(12.0, 106.0, {1: 7.0, 2: 1.5, 3: 0.5}, steal=3.4)  # pid 3 born in between: from zero
    load = between(start, end, cores=4)
    assert load.others_cpu_s == pytest.approx(6.0 - 2.0 - 0.5 - 0.5)
    assert load.others_cores == pytest.approx(3.0 / 2.0)
    assert load.steal_pct == pytest.approx(100 * 0.4 / (2.0 * 4))


def test_a_quiet_host_reads_no_others_and_no_steal_where_none_is_reported():
    load = between(reading(0.0, 50.0, {1: 1.0}), reading(1.0, 50.8, {1: 1.9}), cores=2)
    assert load.others_cpu_s == 0.0 and load.others_cores == 0.0  # counters' jitter never goes below zero
    assert load.steal_s is None and load.steal_pct is None


def test_the_tracker_reads_before_and_after_and_gives_none_where_the_host_hides_its_counters():
    readings = iter([reading(0.0, 10.0, {1: 0.0}), reading(2.0, 14.0, {1: 1.0})])
    with HostLoadTracker(read=lambda: next(readings), cores=8) as tracker:
        pass
    assert tracker.load.others_cores == pytest.approx(1.5) and tracker.load.cores == 8

    def hidden():
        raise PermissionError("/proc/stat")

    with HostLoadTracker(read=hidden) as tracker:
        pass
    assert tracker.load is None


SPIN = "import time\nend = time.time() + 20\nwhile time.time() < end: pass\n"


def test_a_busy_neighbour_counts_and_a_busy_child_of_this_process_does_not(tmp_path):
    """Real processes: a spinning neighbour outside this process tree (orphaned by a shell that
    exits), then a spinning child of this process."""
    script = tmp_path / "spin.py"
    script.write_text(SPIN)
    pid = int(subprocess.run(["sh", "-c", f"{sys.executable} {script} >/dev/null 2>&1 & echo $!"],
                             capture_output=True, text=True, check=True).stdout)
    try:
        time.sleep(0.2)
        with HostLoadTracker() as tracker:
            time.sleep(1.5)
        assert tracker.load.others_cpu_s > 0.3, tracker.load  # the neighbour's spinning
    finally:
        os.kill(pid, signal.SIGKILL)
    child = subprocess.Popen([sys.executable, str(script)])
    try:
        time.sleep(0.2)
        before = read_host()
        time.sleep(1.5)
        after = read_host()
        assert child.pid in after.own_s  # a descendant is this tree's work, not the others'
        assert after.own_s[child.pid] - before.own_s.get(child.pid, 0.0) > 0.3
    finally:
        child.kill()
        child.wait()
