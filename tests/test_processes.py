"""Children from the preloading fork server: what they inherit, how they end, and the preload's
answers to torchao's import-time GPU questions (CPU machine: NVML's answers are faked)."""

from __future__ import annotations

import os

import pytest

from bench.telemetry import preload
from bench.telemetry.processes import preloading_context, start_python


def test_a_child_sees_the_environment_and_directory_of_when_it_was_started(tmp_path, monkeypatch):
    context = preloading_context()
    first = start_python(context, exec, ("print('first')",), tmp_path / "first.log")
    first.join(60)  # the server is running now; what changes after it started must still reach a child
    monkeypatch.setenv("BENCH_TEST_VALUE", "set-after-the-server-started")
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "child.log"
    child = start_python(context, exec, ("import os; print(os.environ['BENCH_TEST_VALUE'], os.getcwd())",), log)
    child.join(60)
    assert child.exitcode == 0
    assert log.read_text().split() == ["set-after-the-server-started", str(tmp_path)]


def test_a_childs_exit_code_and_error_reach_the_parent_and_its_log(tmp_path):
    log = tmp_path / "child.log"
    child = start_python(preloading_context(), exec, ("raise SystemExit(3)",), log)
    child.join(60)
    assert child.exitcode == 3
    failing = start_python(preloading_context(), exec, ("raise ValueError('what went wrong')",), log)
    failing.join(60)
    assert failing.exitcode == 1 and "ValueError: what went wrong" in log.read_text()


def test_a_child_runs_the_exit_handlers_it_registered_and_not_those_it_inherited(tmp_path):
    import multiprocessing

    # a forked child ends in os._exit, which runs none: Unsloth's compilation cache is saved in one
    code = ("import atexit, pathlib; atexit.register(pathlib.Path(%r).write_text, 'saved'); raise SystemExit(2)"
            % str(tmp_path / "own"))
    child = start_python(preloading_context(), exec, (code,), tmp_path / "child.log")
    child.join(60)
    assert child.exitcode == 2 and (tmp_path / "own").read_text() == "saved"
    # with plain fork the child holds this process's handlers, which are this process's to run
    inherited = (tmp_path / "inherited")
    import atexit

    atexit.register(inherited.write_text, "run by the child")
    try:
        forked = start_python(multiprocessing.get_context("fork"), exec, ("pass",), tmp_path / "forked.log")
        forked.join(60)
    finally:
        atexit.unregister(inherited.write_text)
    assert forked.exitcode == 0 and not inherited.exists()


def test_while_preloading_the_gpu_questions_are_answered_from_nvml_then_torch_answers_again(monkeypatch):
    import torch.cuda
    import torch.utils._triton as triton_utils

    own = torch.cuda.get_device_capability, triton_utils.has_triton
    monkeypatch.setattr(preload, "_pinned_capability", lambda: (9, 0))
    with preload.answered_from_nvml():
        assert torch.cuda.get_device_capability() == (9, 0)  # torch would start CUDA to say so
        assert triton_utils.has_triton() == triton_utils.has_triton_package()
    assert (torch.cuda.get_device_capability, triton_utils.has_triton) == own


def test_without_a_gpu_nothing_is_replaced(monkeypatch):
    import torch.cuda

    own = torch.cuda.get_device_capability
    monkeypatch.setattr(preload, "_pinned_capability", lambda: None)
    with preload.answered_from_nvml():
        assert torch.cuda.get_device_capability is own


@pytest.mark.parametrize("visible", ["", "not-a-gpu"])
def test_no_capability_where_nvml_cannot_name_the_pinned_gpu(monkeypatch, visible):
    monkeypatch.setitem(os.environ, "CUDA_VISIBLE_DEVICES", visible)
    assert preload._pinned_capability() is None  # this machine has no GPU, or the value names none


def test_a_failing_preload_never_takes_the_fork_server_down(monkeypatch, capsys):
    def broken():
        raise AttributeError("module 'torch.utils._triton' has no attribute 'has_triton_package'")

    monkeypatch.setattr(preload, "_pinned_capability", lambda: (9, 0))
    monkeypatch.setattr("torch.utils._triton.has_triton_package", broken)
    preload.preload(["json"])  # must not raise
    assert "preloaded less than asked: AttributeError" in capsys.readouterr().err


def test_a_calibration_that_fails_in_its_child_says_why_and_caches_nothing(tmp_path):
    """The GPU's ceilings are measured in a child of the fork server (the parent must not start
    CUDA); here there is no GPU, so the child fails, and the parent says so with its log."""
    from bench.telemetry.calibration import cached

    with pytest.raises(RuntimeError, match=r"measuring the GPU's ceilings failed \(exit code 1\): .*its log: "):
        cached(tmp_path, "GPU-none", "0", "cuda:0", context=preloading_context())
    assert not list(tmp_path.glob("calibration-*.json"))
