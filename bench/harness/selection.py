"""Which collected cases a run of the suites keeps, and in what order: those of the profile's suites,
and those of any suite whose file the command line names, suite by suite in `RUN_ORDER`.

A profile's suites are what a run of the whole directory measures (`pytest suites/`); a suite left
out of it is still one argument away (`pytest suites/test_serve.py`), as pytest users expect of a
file they named. A `-k` expression selects among the profile's cases, as it does among any others.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from bench.harness.isolate import PARENT_SUITES
from bench.harness.workers import group_of
from bench.records.metrics import SUITES
from bench.records.profiles import PROFILES


def named_files(args: Iterable[str], invocation_dir: Path) -> set[Path]:
    """The files the arguments name, or name a node inside: a path (`suites/test_serve.py`,
    `suites/test_serve.py::test_serve[c1]`) or, with --pyargs, a module (`bench.suites.test_serve`)."""
    return {path for arg in args if (path := _file_of(arg.split("::")[0], invocation_dir)) is not None}


def _file_of(target: str, invocation_dir: Path) -> Path | None:
    candidate = invocation_dir / target
    if candidate.exists() or "/" in target or target.endswith(".py"):
        return candidate.resolve()
    try:  # a module's dotted name, as --pyargs takes it
        spec = importlib.util.find_spec(target)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin).resolve() if spec is not None and spec.origin else None


def outside_profile(items: list[pytest.Item], suites: Iterable[str], suite_of: Callable[[pytest.Item], str | None],
                    args: Iterable[str], invocation_dir: Path) -> list[pytest.Item]:
    """The suite cases of suites the profile leaves out whose file no argument names."""
    kept, named = set(suites), named_files(args, invocation_dir)
    return [item for item in items
            if (suite := suite_of(item)) is not None and suite not in kept and Path(item.path).resolve() not in named]


def left_out_note(profile: str, left_out: list[pytest.Item], suite_of: Callable[[pytest.Item], str | None]) -> str:
    """What the run did not measure and how to measure it, in the words the terminal, summary and
    report use."""
    counts = Counter(suite_of(item) for item in left_out)
    files = sorted({Path(item.nodeid.split("::")[0]).as_posix() for item in left_out})
    parts = [f"{suite} ({n} case{'s' if n != 1 else ''})" for suite, n in counts.items()]
    listed = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
    runs = [f"--profile {p.name}" for p in PROFILES.values() if set(counts) <= set(p.suites)]
    how = f"{' and '.join(runs)} run{'s' if len(runs) == 1 else ''} them, as does naming the file" if runs \
        else "naming the file runs them"
    return f"profile {profile} leaves out {listed}: {how} (pytest {' '.join(files)})"


def suite_of(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("suite")
    return marker.args[0] if marker else None


def isolated(item: pytest.Item) -> bool:
    """Whether a case runs in a child when isolating (a suite case the parent does not run itself)."""
    suite = suite_of(item)
    return suite is not None and suite not in PARENT_SUITES


# Load first, so that a cold load is really the process's first; inference before training, whose
# isolated children need the fork server's whole import (peft, trl), which inference children do
# without: the server imports while the load and inference groups run (bench.harness.isolate).
RUN_ORDER = ("load", "infer", "train", "adapter", "concurrency", "serve")
assert set(RUN_ORDER) == set(SUITES)


def case_group(item: pytest.Item) -> str | None:
    return group_of(suite_of(item), item.nodeid.split("::")[0])


def natural_order(item: pytest.Item) -> tuple:
    suite = suite_of(item)
    if suite is None:
        return (-1,)
    callspec = getattr(item, "callspec", None)
    line = item.function.__code__.co_firstlineno if hasattr(item, "function") else 0
    return (RUN_ORDER.index(suite), str(item.path), line, tuple(callspec.indices.values()) if callspec else ())
