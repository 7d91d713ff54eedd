"""The options, declared once (bench.harness.option_table): the pytest options, the options object
and the documentation's table agree."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest

from bench.harness.option_table import OPTIONS, BenchOptions, bench_options, check_defaults, options_table

from conftest import REPO

# what a session knows beyond its command line: xdist's settings and a worker's place
PLUMBING = {"workers", "dist", "worker_id", "turn"}


def test_every_field_of_the_options_object_is_an_option_or_plumbing_and_defaults_agree():
    set_by_options = {o.field for o in OPTIONS if o.field}
    assert {f.name for f in fields(BenchOptions)} == set_by_options | PLUMBING
    assert check_defaults() == []


def test_a_parsed_command_line_becomes_the_options_object():
    given = {"--threshold": "10%", "--bench-run-gpus": "0,1", "--gpu": "1", "--isolate": "case"}
    options = bench_options(lambda flag: given.get(flag, next(o.default for o in OPTIONS if o.flag == flag)),
                            workers=2, dist="load")
    assert (options.threshold, options.run_gpus, options.gpu, options.isolate, options.workers) == (
        0.1, (0, 1), "1", "case", 2)


def test_the_documentations_table_is_the_option_table():
    text = (REPO / "docs" / "options.md").read_text()
    documented = re.findall(r"^\| (`--[a-z-]+`) \| (.*) \|$", text, re.M)
    assert documented == options_table()


@pytest.mark.slow
def test_the_suites_keep_their_order_when_another_plugin_shuffles_tests():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "pytest", "suites/", "--collect-only", "-q", "-p", "randomly",
                          "-p", "no:cacheprovider", "-p", "randomly", "--randomly-seed", "7"],
                         cwd=REPO, capture_output=True, text=True, timeout=300).stdout
    cases = [line for line in out.splitlines() if line.startswith("suites/")]
    assert cases[:2] == ["suites/test_load.py::test_load[cold]", "suites/test_load.py::test_load[warm]"]
    assert [c.split("::")[0] for c in cases] == sorted((c.split("::")[0] for c in cases),
                                                       key=["suites/test_load.py", "suites/test_infer.py",
                                                            "suites/test_train.py", "suites/test_adapter.py"].index)
