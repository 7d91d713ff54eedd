"""`bench cluster run` on a Ray cluster started here with two fake GPUs: the shards' cases come back
as one run with every case exactly once. A file of its own: Ray's daemons are the slowest thing the
tests start, and beside the other distributed tests they would hold one worker for all of them."""

import os
import subprocess
import sys

import pytest

from bench.records.results import RunManifest, read_results

from conftest import REPO
from test_distributed import STRUCTURE_ONLY

pytestmark = [pytest.mark.slow, pytest.mark.heavy]


def test_ray_runs_the_suites_on_two_fake_gpus_into_one_run(tmp_path):
    pytest.importorskip("ray", reason="pip install -e '.[test]' installs Ray for this test")
    env = {**{k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}, "RAY_AUTH_MODE": "disabled"}
    result = subprocess.run([sys.executable, "-m", "bench.commands.cli", "cluster", "run", "--local-gpus", "2",
                             "--report-dir", str(tmp_path), "--run-id", "ray", "--", "suites/test_load.py",
                             "suites/test_infer.py", "-k", "load or bs1-low", "--baseline", str(STRUCTURE_ONLY),
                             "--benchmark-disable"],
                            capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 shards on a Ray cluster with 2 GPUs" in result.stdout
    records = read_results(tmp_path / "ray")
    keys = [(r.test_id, r.metric) for r in records]
    assert len(keys) == len(set(keys)), "a measurement was recorded twice"
    assert {r.test_id.rsplit("::", 1)[1] for r in records} == {"test_load[cold]", "test_load[warm]",
                                                               "test_generate[bs1-low]"}
    shards = [read_results(tmp_path / "ray.shards" / f"shard-{i}") for i in (0, 1)]
    assert all(shards) and sum(len(s) for s in shards) == len(records)  # both shards ran cases, all merged
    manifest = RunManifest.read(tmp_path / "ray")
    assert any("bench cluster run" in note for note in manifest.notes) and (tmp_path / "ray" / "report.html").is_file()
