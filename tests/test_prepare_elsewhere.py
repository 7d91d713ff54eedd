"""A process that times loads builds nothing in itself: what must be built is built in a process of
its own, so that the cold load after a first-use build is still the process's first load."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.errors import BenchError
from bench.harness.session import BenchSession
from bench.models import ModelSource, resolve_model


def build_here(source) -> str:
    """A stand-in for a backend's `prepare`: builds once, and the build says which process made it."""
    if not Path(source.spec).exists():
        Path(source.spec).write_text(str(os.getpid()))
    return source.spec


def found(source) -> bool:
    return Path(source.spec).exists()


def fail_to_build(source) -> str:
    print("no room left on the device")
    raise SystemExit(3)


def session(tmp_path: Path, isolation: str, device: str = "cpu", kind: str = "tiny") -> SimpleNamespace:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    source = SimpleNamespace(spec=str(tmp_path / "pid"), kind=kind)
    return SimpleNamespace(isolation=isolation, device=device, source=source, start=lambda: run_dir,
                           processes=lambda: pytest.fail("a measuring process started a fork server"))


def builder_pid(tmp_path: Path) -> int:
    return int((tmp_path / "pid").read_text())


@pytest.mark.parametrize("kind,device", [("tiny", "cpu"), ("replica", "cuda:0")])
def test_a_measuring_process_builds_in_a_fresh_interpreter_and_then_only_finds_it(tmp_path, kind, device):
    s = session(tmp_path, isolation="off", device=device, kind=kind)
    assert BenchSession.prepare_safely(s, build_here, found) == str(tmp_path / "pid")
    assert builder_pid(tmp_path) != os.getpid()
    assert not (s.start() / "prepare.log").exists()  # it said nothing: no log to keep
    calls = []

    def prepare(source):
        calls.append(os.getpid())
        return source.spec

    assert BenchSession.prepare_safely(s, prepare, found) == str(tmp_path / "pid")
    assert calls == [os.getpid()]  # prepared already: no process started


def test_a_build_that_fails_elsewhere_says_why_in_one_line_and_keeps_its_log(tmp_path):
    s = session(tmp_path, isolation="off")
    with pytest.raises(BenchError, match=r"failed in a child process \(exit code 3\): no room left on the device"):
        BenchSession.prepare_safely(s, fail_to_build, lambda source: False)
    assert "no room left" in (s.start() / "prepare.log").read_text()


def test_without_a_readiness_check_only_the_parent_of_gpu_children_builds_elsewhere(tmp_path):
    calls = []

    def prepare(source):
        calls.append(os.getpid())
        return "here"

    assert BenchSession.prepare_safely(session(tmp_path, "off", "cuda:0", "replica"), prepare) == "here"
    assert BenchSession.prepare_safely(session(tmp_path, "group", "cuda:0", "tiny"), prepare) == "here"
    assert calls == [os.getpid()] * 2


def test_backends_say_whether_preparing_would_build(tmp_path, monkeypatch):
    from bench.backends.hf import HFBackend
    from bench.backends.unsloth import UnslothBackend
    from bench.models import replica

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    source = resolve_model("replica:gpt-oss-20b")
    hf, unsloth = HFBackend("cuda:0"), UnslothBackend("cuda:0")
    assert not hf.prepared(source) and not unsloth.prepared(source)
    bf16 = replica.build_dir("gpt-oss-20b", tmp_path)
    bf16.mkdir()
    (bf16 / "build.json").write_text("{}")
    assert hf.prepared(source)
    assert not unsloth.prepared(source)  # Unsloth loads its own 4-bit copy, quantized from the bf16 one
    quantized = replica.build_dir("gpt-oss-20b", tmp_path, unsloth.quantized_variant)
    quantized.mkdir()
    (quantized / "build.json").write_text("{}")
    assert unsloth.prepared(source)
    assert hf.prepared(ModelSource("openai/gpt-oss-20b", "hub", loss_meaningful=True))  # found or refused, never built
