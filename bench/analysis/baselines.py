"""Baseline files: load, validate and evaluate.

A baseline is a TOML file per (model, hardware). `[checks]` are gates, `[reference]` documented
figures shown beside the measured ones, `[thresholds]` per-metric comparison thresholds, `[gates]`
metric = true/false to opt a diagnostic into gating (or a gating metric out). A check
entry is an inline table or an array of them:

    load_s = { max = 5.0 }
    decode_tok_s = [ { min = 2.0, where = { batch_size = 1 } }, { min = 4.0, where = { batch_size = 2 } } ]

Everything is checked when the file is read; a check whose `where` can match nothing in the run's
parameter grid is refused before any case runs (see `unmatched_checks`).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from bench.analysis.serving import SLO_NAMES, parse_duration
from bench.errors import BenchError
from bench.records.metrics import METRICS, PARAM_KEYS

# The documented baselines ship inside the package; a user's own live in their project.
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "documented"
USER_DIR_ENV = "BENCH_BASELINE_DIR"


def user_dir(explicit: str | Path | None = None) -> Path:
    """Where a user's baselines live and `bench baseline save` writes: --baseline-dir, else
    $BENCH_BASELINE_DIR, else ./baselines of the current directory (asv and pytest-benchmark keep
    their results in the user's project the same way)."""
    return Path(explicit or os.environ.get(USER_DIR_ENV) or "baselines")


def search_path(explicit: str | Path | None = None) -> list[Path]:
    """The user's directory first, then the shipped documented baselines."""
    return [user_dir(explicit), SHIPPED_DIR]


def _dirs(search: Path | list[Path] | None) -> list[Path]:
    if search is None:
        return search_path()
    return [search] if isinstance(search, Path) else list(search)


@dataclass(frozen=True)
class Check:
    metric: str
    min: float | None = None
    max: float | None = None
    where: dict = field(default_factory=dict)
    source: str = ""

    def describe(self) -> str:
        bound = " and ".join(b for b in (f">= {self.min:g}" if self.min is not None else "",
                                         f"<= {self.max:g}" if self.max is not None else "") if b)
        scope = ", ".join(f"{k}={v}" for k, v in self.where.items())
        return f"{self.metric} {bound}" + (f" where {scope}" if scope else "")

    def passes(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def failure_message(self, value: float, unit: str) -> str:
        limit = f"min {self.min:g}" if self.min is not None and value < self.min else f"max {self.max:g}"
        return (f"{self.metric} = {value:.4g} {unit} misses {limit} {unit} "
                f"(baseline '{self.source}')").replace("  ", " ")


@dataclass(frozen=True)
class Reference:
    metric: str
    value: float
    where: dict = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class Quiet:
    """`[quiet]`: thresholds for two runs that both ran on a quiet host. Drift between separate runs
    comes mostly from what else the host runs, which every case records (`others_cpu_cores`); where
    no case of a pair saw more than `others_cpu_cores` cores of it, in either run, these thresholds
    apply instead of `[thresholds]`."""

    others_cpu_cores: float
    thresholds: dict


@dataclass(frozen=True)
class Baseline:
    name: str
    models: tuple[str, ...]
    gpu: str
    path: Path
    checks: tuple[Check, ...] = ()
    references: tuple[Reference, ...] = ()
    thresholds: dict = field(default_factory=dict)
    profile: str | None = None  # set when frozen from a run: its checks are that profile's cases
    gates: dict = field(default_factory=dict)  # metric -> bool: opts a diagnostic into gating, or a metric out
    about: str | None = None  # meta.about: which checks apply to this model and why, shown with the run
    slo: dict = field(default_factory=dict)  # [slo]: the serving suite's objectives, seconds (e.g. ttft, tpot)
    quiet: Quiet | None = None

    def checks_for(self, record_fields: dict) -> list[Check]:
        return [c for c in self.checks if c.metric == record_fields["metric"] and matches(c.where, record_fields)]

    def references_for(self, record_fields: dict) -> list[Reference]:
        return [r for r in self.references
                if r.metric == record_fields["metric"] and matches(r.where, record_fields)]


def matches(where: dict, fields_: dict) -> bool:
    """True when every key of `where` equals the record's parameter (or suite/model/backend).

    A list value means any of its items; numbers compare as numbers, the rest as strings.
    """
    params = {**fields_.get("params", {}), **{k: fields_.get(k) for k in ("suite", "model", "backend")}}
    for key, want in where.items():
        have = params.get(key)
        options = want if isinstance(want, list) else [want]
        if not any(_same(have, w) for w in options):
            return False
    return True


def _same(have, want) -> bool:
    if have is None:
        return False
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        try:
            return float(have) == float(want)
        except (TypeError, ValueError):
            return False
    return str(have) == str(want)


def load_baseline(spec: str | Path, search: Path | list[Path] | None = None) -> Baseline:
    """A baseline by file path, or by name (file stem) in the search path: the user's first."""
    path = Path(spec)
    if not path.is_file():
        dirs = _dirs(search)
        candidates = [p for d in dirs for p in sorted(d.glob("*.toml")) if p.stem == str(spec)]
        if not candidates:
            names = ", ".join(sorted({p.stem for d in dirs for p in d.glob("*.toml")})) or "none"
            raise BenchError(f"--baseline {spec}: no such file or baseline name (available: {names}; "
                             f"searched {', '.join(str(d) for d in dirs)})")
        path = candidates[0]
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"baseline {path}: not valid TOML ({exc}); fix the file or pass another --baseline") from exc
    return parse_baseline(data, path)


def parse_baseline(data: dict, path: Path) -> Baseline:
    def fail(msg: str) -> BenchError:
        return BenchError(f"baseline {path}: {msg}")

    meta = data.get("meta")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        raise fail("needs a [meta] table with a name")
    models = meta.get("model", [])
    models = (models,) if isinstance(models, str) else tuple(models)
    unknown_tables = set(data) - {"meta", "checks", "reference", "thresholds", "gates", "slo", "quiet"}
    if unknown_tables:
        raise fail(f"unknown table(s) {sorted(unknown_tables)}; allowed: meta, checks, reference, thresholds, gates, "
                   "slo, quiet")
    checks = []
    for metric_name, entries in data.get("checks", {}).items():
        _known_metric(metric_name, fail)
        for entry in entries if isinstance(entries, list) else [entries]:
            if not isinstance(entry, dict) or not ({"min", "max"} & set(entry)):
                raise fail(f"check {metric_name} needs min and/or max, e.g. {metric_name} = {{ max = 5.0 }}")
            if set(entry) - {"min", "max", "where"}:
                raise fail(f"check {metric_name}: unknown key(s) {sorted(set(entry) - {'min', 'max', 'where'})}")
            bounds = {k: _number(entry[k], f"check {metric_name}.{k}", fail) for k in ("min", "max") if k in entry}
            checks.append(Check(metric_name, bounds.get("min"), bounds.get("max"),
                                _where(entry.get("where", {}), metric_name, fail), meta["name"]))
    references = []
    for metric_name, entries in data.get("reference", {}).items():
        _known_metric(metric_name, fail)
        for entry in entries if isinstance(entries, list) else [entries]:
            if not isinstance(entry, dict) or "value" not in entry:
                raise fail(f"reference {metric_name} needs a value, e.g. {metric_name} = {{ value = 16.3 }}")
            references.append(Reference(metric_name, _number(entry["value"], f"reference {metric_name}", fail),
                                        _where(entry.get("where", {}), metric_name, fail), str(entry.get("note", ""))))
    thresholds = {}
    for metric_name, value in data.get("thresholds", {}).items():
        _known_metric(metric_name, fail)
        thresholds[metric_name] = _number(value, f"threshold {metric_name}", fail)
    gates = {}
    for metric_name, value in data.get("gates", {}).items():
        _known_metric(metric_name, fail)
        if not isinstance(value, bool):
            raise fail(f"gates.{metric_name} must be true or false, not {value!r}")
        gates[metric_name] = value
    slo = {}
    for name, value in data.get("slo", {}).items():
        if name not in SLO_NAMES:
            raise fail(f"slo.{name}: unknown objective; use {', '.join(SLO_NAMES)} (e.g. tpot = \"100ms\")")
        slo[name] = parse_duration(value, f"baseline {path}: slo.{name}")
    profile = meta.get("profile")
    if profile is not None and not isinstance(profile, str):
        raise fail(f"meta.profile must be a profile name, not {profile!r}")
    about = meta.get("about")
    if about is not None and not isinstance(about, str):
        raise fail(f"meta.about must be text, not {about!r}")
    return Baseline(meta["name"], models, str(meta.get("gpu", "")), path, tuple(checks), tuple(references), thresholds,
                    profile, gates, about, slo, _quiet(data.get("quiet"), fail))


def _quiet(table, fail) -> Quiet | None:
    if table is None:
        return None
    if not isinstance(table, dict) or set(table) - {"others_cpu_cores", "thresholds"} or "others_cpu_cores" not in table:
        raise fail("[quiet] takes others_cpu_cores (the most cores the rest of the host may use) and a "
                   "[quiet.thresholds] table, e.g. others_cpu_cores = 0.5")
    cores = _number(table["others_cpu_cores"], "quiet.others_cpu_cores", fail)
    if not isinstance(table.get("thresholds", {}), dict):
        raise fail("quiet.thresholds must be a table of metric = fraction, e.g. s_per_step = 0.12")
    thresholds = {}
    for metric_name, value in table.get("thresholds", {}).items():
        _known_metric(metric_name, fail)
        thresholds[metric_name] = _number(value, f"quiet threshold {metric_name}", fail)
    return Quiet(cores, thresholds)


def _known_metric(name: str, fail) -> None:
    if name not in METRICS:
        raise fail(f"unknown metric '{name}' (known: {', '.join(sorted(METRICS))})")


def _number(value, what: str, fail) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(f"{what} must be a number, not {value!r}")
    return float(value)


def _where(where, metric_name: str, fail) -> dict:
    if not isinstance(where, dict):
        raise fail(f"{metric_name}.where must be a table, e.g. where = {{ batch_size = 1 }}")
    unknown = set(where) - set(PARAM_KEYS)
    if unknown:
        raise fail(f"{metric_name}.where: unknown parameter(s) {sorted(unknown)} (known: {', '.join(PARAM_KEYS)})")
    return dict(where)


# A baseline's `gpu` that matches every GPU: for checks about the model, not about the hardware.
ANY_GPU = "any GPU"


def find_default(model: str, hardware: str, search: Path | list[Path] | None = None,
                 profile: str | None = None) -> tuple[Baseline | None, bool]:
    """The baseline for this model on this hardware; else one for the model on other hardware.
    The user's directory is searched before the shipped baselines; a baseline frozen from a run
    names its profile and is a candidate for runs of that profile only.

    Returns (baseline, hardware_matches). A file that does not parse here is skipped silently only
    when it is not a candidate; a candidate that is malformed is an error.
    """
    model_only = None
    for path in (p for d in _dirs(search) for p in sorted(d.glob("*.toml"))):
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError:
            raw = {}
        meta = raw.get("meta", {})
        models = meta.get("model", [])
        models = [models] if isinstance(models, str) else list(models)
        if model not in models or (profile and meta.get("profile", profile) != profile):
            continue
        baseline = load_baseline(path)
        if baseline.gpu.lower() == hardware.lower() or (baseline.gpu == ANY_GPU and hardware.lower() != "cpu"):
            return baseline, True
        model_only = model_only or baseline
    return model_only, False


def unmatched_checks(baseline: Baseline, grid: list[dict]) -> list[Check]:
    """Checks whose metric and `where` match no case the run could produce."""
    out = []
    for check in baseline.checks:
        suites = METRICS[check.metric].suites
        if not any(case["suite"] in suites and matches(check.where, case) for case in grid):
            out.append(check)
    return out


@dataclass(frozen=True)
class CheckOutcome:
    """One check applied to one measurement."""

    check: Check
    test_id: str
    params: dict
    value: float
    unit: str
    passed: bool

    @property
    def message(self) -> str:
        return "" if self.passed else self.check.failure_message(self.value, self.unit)


def evaluate(baseline: Baseline | None, record: dict) -> list[CheckOutcome]:
    """Every check of `baseline` that applies to `record` (a Measurement as a dict)."""
    if baseline is None or record.get("status", "ok") != "ok" or record.get("value") is None:
        return []
    return [CheckOutcome(c, record["test_id"], record.get("params", {}), float(record["value"]),
                         record.get("unit", ""), c.passes(float(record["value"])))
            for c in baseline.checks_for(record)]
