import os

import pytest

from conftest import REPO
from bench.telemetry import environment


def test_secrets_never_pass_the_allow_list(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnopqrstuvwxyz")
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef")
    monkeypatch.setenv("MY_SECRET", "s3cr3t-value")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    env = environment.allowed_environment()
    assert env == {"CUDA_VISIBLE_DEVICES": "0"} or set(env) <= set(environment.ENV_ALLOW)
    assert not any("hf_abc" in v or "0123456789abcdef" in v for v in env.values())


def test_redact_removes_secret_values_and_token_shapes(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef")
    text = "failed with key 0123456789abcdef and token hf_abcdefghijklmnopqrstuvwxyz"
    assert environment.redact(text) == "failed with key *** and token ***"


def test_redact_argv_hides_values_of_secret_flags():
    argv = ["suites/", "--hf-token", "hf_abcdefghijklmnopqrstuv", "--api-key=abc123", "--model", "tiny-gpt-oss"]
    assert environment.redact_argv(argv) == ["suites/", "--hf-token", "***", "--api-key=***", "--model", "tiny-gpt-oss"]


def test_versions_names_the_stack():
    v = environment.versions()
    assert v["python"] and v["torch"] and "unsloth" in v and "bitsandbytes" in v


@pytest.mark.parametrize("line, expected", [("cuda: Optional[str] = '13.0'", True), ("cuda: Optional[str] = None", False),
                                            ("cuda = '12.8'", True)])
def test_whether_torch_has_cuda_is_read_from_its_version_file_without_importing_it(tmp_path, line, expected):
    """The parent of isolated children learns it, and the manifest its CUDA version, without paying
    torch's import (4-5 s on a GPU host)."""
    import subprocess
    import sys

    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise RuntimeError('torch was imported')\n")
    (fake / "version.py").write_text(f"from typing import Optional\n__version__ = '2.13.0'\n{line}\n")
    code = ("import sys; from bench.telemetry.devices import torch_cuda_version, torch_has_cuda; "
            "print(torch_has_cuda(), torch_cuda_version(), 'torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr[-1000:]
    version = line.split("=")[-1].strip().strip("'")
    assert out.stdout.split() == [str(expected), version, "False"]
