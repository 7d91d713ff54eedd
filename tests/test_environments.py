"""Sides that are environments (`bench ab --a/--b`, `bench bisect`): parsing a side, the packages a
side's environment copies, the version diff the comparison leads with, the versions a bisection
walks and how each of its steps is decided; and one bisection end to end over a wheelhouse whose
fourth version plants a slowdown."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bench.analysis.compare import compare
from bench.commands.bisect import choose, regressed, versions_between
from bench.commands.environments import EnvSpec, parse_side, runtime_packages, version_diff
from bench.errors import BenchError
from bench.report.comparison import Version, Versions, to_json, to_markdown

from conftest import REPO, make_record

PLANTED = "gptossbench-planted-slowdown"
VERSIONS = ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0")


def make_wheel(house: Path, version: str, slowdown: str | None) -> None:
    """A wheel whose path file runs at every interpreter's start: from the planted version on, it sets
    the harness's test-only slowdown hook, as a release that made every token slower would."""
    module = PLANTED.replace("-", "_")
    dist = f"{module}-{version}"
    files = {f"{module}.pth": f"import {module}\n",
             f"{module}/__init__.py": "import os\n" + (
                 f"os.environ.setdefault('BENCH_TEST_SLOWDOWN', '{slowdown}')\n" if slowdown else ""),
             f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {PLANTED}\nVersion: {version}\n",
             f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: bench-tests\nRoot-Is-Purelib: true\n"
                                        "Tag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record + [f"{dist}.dist-info/RECORD,,"]) + "\n"
    with zipfile.ZipFile(house / f"{dist}-py3-none-any.whl", "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    house = tmp_path_factory.mktemp("wheelhouse")
    for i, version in enumerate(VERSIONS):
        make_wheel(house, version, "3.0" if i >= 3 else None)
    return house


def test_a_side_is_pins_a_requirements_file_or_an_interpreter(tmp_path):
    assert parse_side("unsloth==2026.10.9, unsloth_zoo==2026.10.9").pins == ("unsloth==2026.10.9",
                                                                             "unsloth_zoo==2026.10.9")
    reqs = tmp_path / "old.txt"
    reqs.write_text("peft==0.20.0\n")
    assert parse_side(str(reqs)).requirements == reqs.resolve()
    assert parse_side(sys.executable).interpreter is not None and not parse_side(sys.executable).builds
    assert parse_side(None) == EnvSpec() and parse_side(None).label == "this environment"
    with pytest.raises(BenchError, match="no such requirements file"):
        parse_side(str(tmp_path / "missing.txt"))
    with pytest.raises(BenchError, match="not a requirement; give pins like unsloth==2026.10.9"):
        parse_side("unsloth===")


def test_a_side_copies_what_the_harness_needs_to_run_and_not_the_harness():
    packages = runtime_packages()
    assert {"torch", "transformers", "peft", "trl", "pytest", "pytest-benchmark"} <= set(packages)
    assert "gpt-oss-bench" not in packages and "ray" not in packages  # test tooling is no runtime need


def test_the_comparison_leads_with_the_refs_and_the_versions_that_differ():
    diff = version_diff({"peft": "0.20.0", "torch": "2.13.0", "gone": "1"}, {"peft": "0.21.2", "torch": "2.13.0"})
    assert diff == [("gone", "1", None), ("peft", "0.20.0", "0.21.2")]
    sides = Versions(Version("A", ".", None, "peft==0.20.0"), Version("B", "HEAD", "0123456789abcdef", "this environment"),
                     tuple(diff))
    result = compare([make_record("load_s", 1.0, cache="warm")], [make_record("load_s", 1.0, cache="warm")])
    text = to_markdown(result, "A", "B", sides)
    assert text.index("What differs between the sides") < text.index("Every gating metric")
    assert "| peft | 0.20.0 | 0.21.2 |" in text and "| gone | 1 | not installed |" in text
    assert "B: git `HEAD` (`0123456789ab`), environment `this environment`." in text
    assert json.loads(to_json(result, "A", "B", sides))["sides"]["packages"][1] == {
        "package": "peft", "a": "0.20.0", "b": "0.21.2"}


def test_a_bisection_walks_the_versions_the_index_lists_between_the_pins(wheelhouse):
    assert versions_between(PLANTED, "1.1.0", "1.4.0", [str(wheelhouse)]) == ["1.1.0", "1.2.0", "1.3.0", "1.4.0"]
    with pytest.raises(BenchError, match="GOOD must be older than BAD"):
        versions_between(PLANTED, "1.4.0", "1.1.0", [str(wheelhouse)])
    with pytest.raises(BenchError, match="1.3.5: not a version the index lists"):
        versions_between(PLANTED, "1.0.0", "1.3.5", [str(wheelhouse)])


def test_a_step_is_decided_by_its_verdict_or_else_by_which_end_its_estimate_is_nearer():
    def timed(center):
        return make_record("decode_tok_s", center, samples=[center * f for f in (0.99, 1.0, 1.01)], batch_size=1,
                           effort="low")

    base = [timed(100.0)]
    clear = compare(base, [timed(50.0)])
    [change] = clear.changes
    assert choose(clear, None, None) is change and regressed(change, 2.0) == (True, "its interval")
    vague = dict(change.__dict__)
    vague.update(verdict="inconclusive")
    close_to_bad = type(change)(**vague)
    assert regressed(close_to_bad, 2.2) == (True, "its point estimate")  # 2x worse of a 2.2x regression
    assert regressed(close_to_bad, 8.0) == (False, "its point estimate")  # nearer none than 8x on the log scale
    assert choose(compare(base, [timed(100.0)]), None, None) is None
    with pytest.raises(BenchError, match="measured no such figure"):
        choose(clear, "s_per_step", None)


@pytest.mark.heavy
@pytest.mark.slow
def test_bench_bisect_finds_the_version_that_planted_a_slowdown(wheelhouse, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "bisect", PLANTED, "1.0.0", "1.5.0", "--find-links", str(wheelhouse),
         "--rounds", "2", "--max-rounds", "2", "--metric", "decode_tok_s", "--case", "batch_size=1, effort=low",
         "--report-dir", str(tmp_path), "--run-id", "planted", "--",
         "suites/test_infer.py", "-k", "bs1-low", "--gpu", "cpu", "--benchmark-disable"],
        capture_output=True, text=True, cwd=REPO, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads((tmp_path / "planted" / "bisect.json").read_text())
    assert (found["first_bad"], found["last_good"]) == ("1.3.0", "1.2.0")
    assert [s["version"] for s in found["steps"]] == ["1.5.0", "1.2.0", "1.3.0"]  # three comparisons for six versions
    assert "first regressed at gptossbench-planted-slowdown 1.3.0" in proc.stdout
    step = (tmp_path / "planted" / "step-2-1.3.0" / "ab.md").read_text()
    assert f"| {PLANTED} | 1.0.0 | 1.3.0 |" in step
