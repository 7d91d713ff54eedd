"""The layering contract of pyproject.toml holds: a back-edge (a lower layer importing a higher
one, or two packages of one layer importing each other) fails here, and so in CI."""

import subprocess
import shutil

import pytest

from conftest import REPO


def test_imports_flow_one_way():
    lint = shutil.which("lint-imports")
    if lint is None:
        pytest.fail("lint-imports is missing: pip install -e '.[test]' (import-linter)")
    proc = subprocess.run([lint, "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]
    assert "broken" in proc.stdout and "0 broken" in proc.stdout
