"""The CI recipes in ci-examples/ run as written: the CPU recipe's commands, in a fresh clone with its
default directories, on a pull request that changes a pin of the stack."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.heavy]


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", *args], cwd=cwd, check=True,
                   capture_output=True)


def recipe_commands(path: Path, base_ref: str, tmp: Path) -> list[str]:
    """Every `run:` of the recipe but its install step (this test's environment stands for it), with
    GitHub's expressions filled in, the runner's /tmp/ as this test's own and two rounds a side (the
    rounds' number is the recipe's choice of power, not what this test checks)."""
    steps = yaml.safe_load(path.read_text())["jobs"]["bench"]["steps"]
    commands = [step["run"].replace("${{ github.base_ref }}", base_ref).replace("/tmp/", f"{tmp}/")
                for step in steps if "run" in step and not step.get("name", "").startswith("Install")]
    assert any("--rounds 5 --max-rounds 20" in c for c in commands)
    return [c.replace("--rounds 5 --max-rounds 20", "--rounds 2 --max-rounds 2") for c in commands]


def test_the_cpu_recipe_gates_a_pull_request_that_changes_a_pin(tmp_path):
    # the target branch pins peft 0.20.0; the pull request moves it to the version installed here
    upstream = tmp_path / "upstream"
    git("clone", "-q", str(REPO), str(upstream), cwd=tmp_path)
    (upstream / "requirements-bench.txt").write_text("peft==0.20.0\n")
    git("add", "requirements-bench.txt", cwd=upstream)
    git("commit", "-q", "-m", "pin the stack", cwd=upstream)
    clone = tmp_path / "clone"
    git("clone", "-q", str(upstream), str(clone), cwd=tmp_path)
    git("checkout", "-q", "-b", "pull-request", cwd=clone)
    from importlib.metadata import version

    (clone / "requirements-bench.txt").write_text(f"peft=={version('peft')}\n")
    git("commit", "-q", "-am", "upgrade peft", cwd=clone)
    # the recipe's options as written; the rounds measure one case each
    env = {**os.environ, "PYTEST_ADDOPTS": "-k 'test_load and warm' --benchmark-disable"}
    for command in recipe_commands(REPO / "ci-examples" / "cpu-runner.yml", "main", tmp_path):
        proc = subprocess.run(["bash", "-e", "-c", command], cwd=clone, env=env, capture_output=True, text=True,
                              timeout=1200)
        assert proc.returncode in (0, 1), proc.stderr[-3000:]  # 1: the gate's own verdict
    # the rounds ran in a worktree of origin/main and in the clone: their runs are under the clone's reports/
    verdict = (clone / "reports" / "ab" / "ab.md").read_text()
    assert f"| peft | 0.20.0 | {version('peft')} |" in verdict
    assert "A: git `origin/main`" in verdict and "environment `" in verdict
    assert sorted(p.name for p in (clone / "reports" / "ab" / "runs").iterdir())[:2] == ["A-0", "A-1"]
    assert not list((clone / "reports" / "ab").glob("worktree-*"))  # the target branch's checkout is cleaned up
