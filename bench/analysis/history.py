"""Many runs as history: grouped by what makes them comparable (GPU, model, engine, profile), each
(suite, metric, case) a series over its group's runs in the order they started, with each run's
interval, the change points over the whole series (`changepoints`), and for each change what
differs between the runs on its two sides (commits, package versions)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bench.analysis.changepoints import ChangePoint, change_points
from bench.analysis.compare import Rules, baseline_of_run, compare
from bench.analysis.runs import RunData
from bench.records.results import describe_params
from bench.analysis.stats import mean_interval
from bench.records.metrics import METRICS, gates, named

NOT_COMPARABLE = "not comparable"


@dataclass(frozen=True)
class Group:
    gpu: str
    model: str
    backend: str
    profile: str

    @property
    def title(self) -> str:
        return f"{self.model} · {self.backend} · {self.gpu} · {self.profile}"

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", f"{self.gpu}-{self.model}-{self.backend}-{self.profile}".lower()).strip("-")


def group_of(run: RunData) -> Group:
    m = run.manifest
    gpu = (m.gpus[0]["name"] if m.gpus else "CPU").replace("NVIDIA ", "")
    return Group(gpu, m.model, m.backend, m.profile)


@dataclass(frozen=True)
class Point:
    run: int  # index of the run in its group
    value: float
    low: float | None
    high: float | None


@dataclass
class Series:
    group: Group
    suite: str
    metric: str
    params: dict
    points: list[Point]
    changes: list[ChangePoint] = field(default_factory=list)  # indices into `points`

    @property
    def case(self) -> str:
        return describe_params(self.params) or "the run"

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", f"{self.suite}-{self.metric}-{self.case}".lower()).strip("-")

    @property
    def gates(self) -> bool:
        return gates(self.metric, self.params)


@dataclass(frozen=True)
class Change:
    """One change point, as `changes.json` carries it for alerting tools."""

    group: str
    suite: str
    metric: str
    case: dict
    run_id: str  # the first run after the change
    previous_run_id: str  # the last run before it
    index: int  # the first run after the change, as its place among the group's runs
    previous_index: int  # the last run before it, likewise
    before: float
    after: float
    direction: str  # "regression" | "improvement"
    gates: bool
    p_value: float
    commits: tuple[str | None, str | None]
    packages: tuple[tuple[str, str | None, str | None], ...]

    def as_dict(self) -> dict:
        return {"group": self.group, "suite": self.suite, "metric": self.metric, "case": self.case,
                "run_id": self.run_id, "previous_run_id": self.previous_run_id, "before": self.before,
                "after": self.after, "change_pct": round((self.after / self.before - 1) * 100, 2),
                "direction": self.direction, "gates": self.gates, "p_value": self.p_value,
                "commits": {"before": self.commits[0], "after": self.commits[1]},
                "packages": [{"package": p, "before": b, "after": a} for p, b, a in self.packages]}


def groups(runs: list[RunData]) -> dict[Group, list[RunData]]:
    """Runs by group, each group in the order its runs started; runs without results left out."""
    out: dict[Group, list[RunData]] = {}
    for run in sorted((r for r in runs if r.ok), key=lambda r: r.manifest.started):
        out.setdefault(group_of(run), []).append(run)
    return out


def series_of(group: Group, runs: list[RunData], metrics: tuple[str, ...] | None = None) -> list[Series]:
    """Every (suite, metric, case) of the group's runs among `metrics` (default: the charted and the
    gating ones), with its change points."""
    wanted = metrics or tuple(dict.fromkeys(named("charted") + named("gates")))
    found: dict[tuple, Series] = {}
    for i, run in enumerate(runs):
        for r in run.ok:
            if r.metric not in wanted:
                continue
            values = [v for v in r.samples if v and v > 0] or ([r.value] if r.value > 0 else [])
            if not values:  # a zero has no place on a log scale (and no change to find)
                continue
            key = r.case_key()
            series = found.setdefault(key, Series(group, r.suite, r.metric, dict(r.params), []))
            if not any(p.run == i for p in series.points):  # a lane of a multi-engine run: its first
                series.points.append(Point(i, *mean_interval(values)))
    for series in found.values():
        series.changes = change_points([p.value for p in series.points])
    order = {m: i for i, m in enumerate(wanted)}
    return sorted(found.values(), key=lambda s: (order[s.metric], s.suite, s.case))


def changes_of(series: list[Series], runs: list[RunData]) -> list[Change]:
    """Every change point of the group's series, regressions first, the latest first within each."""
    out = []
    for s in series:
        for cp in s.changes:
            first, last = s.points[cp.index].run, s.points[cp.index - 1].run
            before, after = runs[last], runs[first]
            out.append(Change(s.group.slug, s.suite, s.metric, s.params, after.manifest.run_id,
                              before.manifest.run_id, first, last, cp.before, cp.after, cp.direction(METRICS[s.metric].better),
                              s.gates, cp.p_value, (before.manifest.git_commit, after.manifest.git_commit),
                              tuple(version_changes(before, after))))
    return sorted(out, key=lambda c: (c.direction != "regression", -c.index))


def version_changes(before: RunData, after: RunData) -> list[tuple[str, str | None, str | None]]:
    a, b = before.manifest.versions, after.manifest.versions
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def against_previous(runs: list[RunData], threshold: float) -> list[tuple[str, dict | None]]:
    """Each run's verdict against the run before it, as `bench compare PREVIOUS RUN` gives it:
    "passed" or "FAILED" with its counts, or "not comparable" where the two share no gating pair
    (nothing was compared, so nothing passed); the first run has no previous one."""
    out: list[tuple[str, dict | None]] = [("first run", None)]
    for prev, run in zip(runs, runs[1:]):
        cmp = compare(prev.records, run.records, Rules.of(threshold, baseline_of_run(prev.run_dir)))
        if not cmp.gating:
            out.append((NOT_COMPARABLE, None))
        else:
            out.append(("FAILED" if cmp.failed else "passed", cmp.counts()))
    return out
