"""`bench bisect PACKAGE GOOD BAD [-- pytest args]`: the first version of a package (or the first
commit of this checkout, PACKAGE `.`) where a figure regressed.

The versions between the two pins are those the package index (and any wheelhouse) lists, in
order. First GOOD and BAD are measured against each other with `bench ab`; the figure to follow
is the gating regression that comparison found (the largest, or the one `--metric`/`--case`
names). Then each step measures the middle version against GOOD, again with `bench ab` (paired,
alternating rounds, each side in its own environment built once with uv), and keeps the half where
the regression appears, until two neighbouring versions are left: the first one that regressed,
and the last one that did not.

A step whose interval cannot call the figure either way is decided by its point estimate, on the
log scale nearer to the full regression or to none, and says so; the report lists every step with
its comparison, so a reader can tell a clear answer from a close one.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.analysis.compare import Comparison, MetricChange, Rules, look, look_points
from bench.analysis.runs import describe_params
from bench.analysis.stats import REGRESSION, times_worse
from bench.commands.ab import max_rounds_of, remove_worktrees, run_ab
from bench.commands.environments import Environment, parse_side, prepare, sides_of
from bench.errors import BenchError
from bench.models.store import cache_root
from bench.records.results import params_key
from bench.report.comparison import to_json, to_markdown

GIT = "."  # PACKAGE meaning this checkout's history


@dataclass(frozen=True)
class Figure:
    """The (suite, metric, case) a bisection follows."""

    suite: str
    metric: str
    params: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, change: MetricChange) -> "Figure":
        return cls(change.suite, change.metric, params_key(change.params))

    def find(self, comparison: Comparison) -> MetricChange | None:
        return next((c for c in comparison.changes if Figure.of(c) == self), None)

    def describe(self) -> str:
        return f"{self.suite} {self.metric}[{describe_params(dict(self.params))}]"


@dataclass
class Step:
    version: str
    regressed: bool
    ratio: float  # new / GOOD of the figure
    low: float
    high: float
    verdict: str  # the comparison's verdict for the figure
    decided_by: str  # "its interval" | "its point estimate"
    comparison: str  # the step's ab.md


@dataclass
class Bisection:
    target: str
    good: str
    bad: str
    versions: list[str]
    figure: str | None = None
    steps: list[Step] = field(default_factory=list)
    first_bad: str | None = None
    last_good: str | None = None

    @property
    def summary(self) -> str:
        if self.figure is None:
            return (f"no gating figure regressed from {self.target} {self.good} to {self.bad}: "
                    "nothing to bisect")
        text = (f"{self.figure} first regressed at {self.target} {self.first_bad} "
                f"(last good: {self.last_good}; {len(self.versions)} versions, {len(self.steps)} comparisons)")
        if not any(s.verdict == "regression" for s in self.steps):
            text += ("; no comparison's interval called a regression, even GOOD against BAD: every step was "
                     "decided by its point estimate, so read this as a lead, not a finding")
        return text


def versions_between(package: str, good: str, bad: str, links: list[str] | None = None) -> list[str]:
    """GOOD, BAD and every release between them the index (and wheelhouses) list, oldest first;
    pre-releases only where GOOD or BAD is one."""
    from packaging.version import InvalidVersion, Version

    command = [sys.executable, "-m", "pip", "index", "versions", package, "--disable-pip-version-check"]
    for link in links or []:
        command += ["--find-links", link]
    if any(Version(v).is_prerelease for v in (good, bad)):
        command.append("--pre")
    proc = subprocess.run(command, capture_output=True, text=True)
    listed = re.search(r"Available versions: (.*)", proc.stdout)
    if proc.returncode != 0 or not listed:
        raise BenchError(f"{package}: the index lists no versions ({(proc.stderr or proc.stdout).strip()[-200:]}); "
                         "check the name, or give a wheelhouse with --find-links")
    try:
        lo, hi = Version(good), Version(bad)
        found = sorted({Version(v.strip()) for v in listed.group(1).split(",") if v.strip()})
    except InvalidVersion as exc:
        raise BenchError(f"{exc}: give GOOD and BAD as versions the index lists") from None
    if lo >= hi:
        raise BenchError(f"{good} .. {bad}: GOOD must be older than BAD")
    chosen = [str(v) for v in found if lo <= v <= hi]
    missing = [v for v in (good, bad) if Version(v) not in found]
    if missing:
        raise BenchError(f"{package} {missing[0]}: not a version the index lists (it lists {len(found)}, "
                         f"{found[0]} to {found[-1]})")
    return chosen


def commits_between(good: str, bad: str, repo: Path) -> list[str]:
    """GOOD and the commits after it up to BAD along the first-parent line, oldest first."""
    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BenchError(f"git {' '.join(args)}: {proc.stderr.strip() or 'failed'}")
        return proc.stdout.strip()

    first = git("rev-parse", "--verify", f"{good}^{{commit}}")
    later = git("rev-list", "--reverse", "--first-parent", f"{good}..{bad}").split()
    if not later:
        raise BenchError(f"{good}..{bad}: no commits between them; give GOOD older than BAD")
    return [first, *later]


def choose(comparison: Comparison, metric: str | None, case: str | None) -> MetricChange | None:
    """The figure to follow: the named one, else the gating regression that is worst."""
    picked = [c for c in comparison.changes if (metric is None or c.metric == metric)
              and (case is None or describe_params(c.params) == case)]
    if metric or case:
        if not picked:
            raise BenchError(f"--metric {metric} --case {case}: the first comparison measured no such figure")
        return max(picked, key=lambda c: times_worse(c.estimate.ratio, c.better))
    regressions = [c for c in picked if c.gates and c.verdict == REGRESSION]
    return max(regressions, key=lambda c: times_worse(c.estimate.ratio, c.better), default=None)


def regressed(change: MetricChange | None, full: float) -> tuple[bool, str]:
    """Whether a step shows the regression: by its verdict where it calls one, else by whether its
    estimate lies nearer (on the log scale) to the full regression `full` than to none."""
    if change is None:
        raise BenchError("a step's comparison did not measure the figure the bisection follows")
    if change.verdict == REGRESSION:
        return True, "its interval"
    worse = times_worse(change.estimate.ratio, change.better)
    if change.verdict == "inconclusive":
        return math.log(max(worse, 1e-9)) >= math.log(full) / 2, "its point estimate"
    return False, "its interval"


class Bisector:
    """Runs the comparisons of one bisection: GOOD against each version, each in its own directory."""

    def __init__(self, target: str, pytest_args: list[str], out: Path, rounds: int, max_rounds: int | None,
                 rules: Rules, links: list[str] | None, echo: Callable[[str], None]) -> None:
        self.target, self.pytest_args, self.out, self.rules = target, pytest_args, out, rules
        self.rounds, self.points = rounds, look_points(rounds, max_rounds_of(rounds, max_rounds))
        self.links, self.echo = links, echo
        self.environments: dict[str, Environment] = {}

    def compare(self, good: str, version: str, index: int) -> tuple[Comparison, Path]:
        out = self.out / f"step-{index}-{_safe(version)}"
        if self.target == GIT:
            refs, envs = (good, version), {"A": self.environment(None), "B": self.environment(None)}
        else:
            refs = (".", ".")
            envs = {"A": self.environment(f"{self.target}=={good}"), "B": self.environment(f"{self.target}=={version}")}
        self.echo(f"bisect: {self.target} {good} against {version}")
        try:
            a, b = run_ab(refs, self.pytest_args, out, self.rounds, echo=self.echo, looks=self.points,
                          enough=lambda a, b: look(a, b, self.rules, len(self.points))[1],
                          pythons={label: env.python for label, env in envs.items()})
        finally:
            remove_worktrees(out)
        result = look(a, b, self.rules, len(self.points))[0]
        sides = sides_of(refs, envs, Path.cwd())
        (out / "ab.md").write_text(to_markdown(result, good, version, sides), encoding="utf-8")
        (out / "ab.json").write_text(to_json(result, good, version, sides), encoding="utf-8")
        return result, out

    def environment(self, pins: str | None) -> Environment:
        if pins not in self.environments:
            self.environments[pins] = prepare(parse_side(pins), cache_root(), self.links, self.echo)
        return self.environments[pins]


def bisect(bisector: Bisector, versions: list[str], metric: str | None = None, case: str | None = None) -> Bisection:
    good, bad = versions[0], versions[-1]
    found = Bisection(bisector.target, good, bad, versions)
    first, out = bisector.compare(good, bad, 0)
    change = choose(first, metric, case)
    if change is None:
        return found
    figure = Figure.of(change)
    found.figure = figure.describe()
    full = times_worse(change.estimate.ratio, change.better)
    named = "its interval" if change.verdict == REGRESSION else "named with --metric/--case"
    found.steps.append(_step(bad, change, True, named, out))
    lo, hi = 0, len(versions) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        result, out = bisector.compare(good, versions[mid], len(found.steps))
        step_change = figure.find(result)
        worse, how = regressed(step_change, full)
        found.steps.append(_step(versions[mid], step_change, worse, how, out))
        lo, hi = (lo, mid) if worse else (mid, hi)
    found.first_bad, found.last_good = versions[hi], versions[lo]
    return found


def _step(version: str, change: MetricChange, worse: bool, how: str, out: Path) -> Step:
    return Step(version, worse, change.estimate.ratio, change.low, change.high, change.verdict, how, str(out / "ab.md"))


def _safe(version: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", version)[:40]


def write(found: Bisection, out: Path) -> None:
    """bisect.json and bisect.md: the answer first, then every step with its comparison."""
    data = asdict(found) | {"summary": found.summary}
    for step in data["steps"]:  # relative to the bisection's directory, which may move
        step["comparison"] = str(Path(step["comparison"]).relative_to(out))
    (out / "bisect.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    lines = [f"### gpt-oss bench: bisect {found.target} {found.good} .. {found.bad}", "", found.summary + ".", ""]
    if found.steps:
        lines += ["| version | against GOOD (interval its verdict used) | verdict | regressed | decided by | comparison |",
                  "|---|---:|---|---|---|---|"]
        for s in found.steps:
            lines.append(f"| {s.version} | {s.ratio:.3f} ({s.low:.3f}-{s.high:.3f}) | {s.verdict} | "
                         f"{'yes' if s.regressed else 'no'} | {s.decided_by} | {Path(s.comparison).relative_to(out)} |")
        lines += ["", "Versions in the range: " + ", ".join(found.versions) + "."]
    (out / "bisect.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
