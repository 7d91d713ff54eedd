"""`bench site RUNS... -o site/`: a static site of every run given, opened from disk or served as
plain files (GitHub Pages), with no server and no network.

- `index.html`: one row per group of comparable runs (GPU, model, engine, profile) with its latest
  run, that run's checks and its verdict against the run before ("not comparable" where the two
  share no gating pair), the change points of every group (regressions first, gating ones before
  diagnostics), and every series with filters by GPU, model, suite and metric;
- `groups/<group>/index.html`: the group's runs and, per metric and case, its trend over the runs
  (each run's interval, the documented target, change points marked), each with its own anchor;
- `compare/<before>--<after>.html`: for every change point, the two runs on its sides compared
  with what differs between them (commits, package versions);
- `runs/<run-id>.html`: each run's own report;
- `changes.json`: one object per change point, for alerting tools.

Adding runs to an existing site re-renders only the groups whose runs changed (`site-state.json`
keeps what each group was made from) and the landing page.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from markupsafe import Markup

from bench.analysis.history import NOT_COMPARABLE, Group, against_previous, changes_of, groups, series_of
from bench.analysis.runs import RunData, checks_table, load_run
from bench.analysis.stats import DEFAULT_THRESHOLD
from bench.errors import BenchError
from bench.records.metrics import METRICS
from bench.records.results import MANIFEST_FILE, RESULTS_FILE, RunManifest
from bench.report import charts
from bench.report.page import environment

STATE_FILE = "site-state.json"
STATE_SCHEMA = 2
CHANGES_FILE = "changes.json"
# Pages may run one script of their own (the landing page's filters), named by its hash: nothing
# else, inline or fetched, runs.
FILTER_SCRIPT = """
const controls = document.querySelectorAll('select[data-filter]');
function apply() {
  const wanted = {};
  controls.forEach(c => { if (c.value) wanted[c.dataset.filter] = c.value; });
  document.querySelectorAll('#series tbody tr').forEach(row => {
    row.hidden = Object.entries(wanted).some(([k, v]) => row.dataset[k] !== v);
  });
  const query = new URLSearchParams(wanted).toString();
  history.replaceState(null, '', query ? '#' + query : location.pathname);
}
controls.forEach(c => c.addEventListener('change', apply));
new URLSearchParams(location.hash.slice(1)).forEach((v, k) => {
  const c = document.querySelector(`select[data-filter="${k}"]`);
  if (c) c.value = v;
});
apply();
""".strip()


def csp(script: str | None = None) -> str:
    scripts = f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'" if script else "'none'"
    return (f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src {scripts}; "
            "base-uri 'none'; form-action 'none'")


@dataclass
class GroupPage:
    """What the landing page needs of a group, kept in the state file so an untouched group is not
    loaded again."""

    slug: str
    title: str
    gpu: str
    model: str
    backend: str
    profile: str
    runs: int
    latest: dict
    changes: list[dict]
    series: list[dict]


def find_runs(sources: list[Path]) -> list[Path]:
    """Run directories: each source is one, or a directory holding them (at any depth)."""
    found = []
    for source in sources:
        source = Path(source)
        if (source / MANIFEST_FILE).is_file():
            found.append(source)
        elif source.is_dir():
            found += sorted(p.parent for p in source.rglob(MANIFEST_FILE) if (p.parent / RESULTS_FILE).is_file())
        else:
            raise BenchError(f"{source}: no such run directory or directory of runs")
    if not found:
        raise BenchError(f"{', '.join(map(str, sources))}: no runs found (directories with manifest.json and "
                         "results.jsonl)")
    return list(dict.fromkeys(p.resolve() for p in found))


def _fingerprint(run_dirs: list[Path]) -> str:
    digest = hashlib.sha256()
    for d in sorted(run_dirs):
        for name in (MANIFEST_FILE, RESULTS_FILE):
            stat = (d / name).stat()
            digest.update(f"{d}|{name}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def build_site(sources: list[Path], out: Path, threshold: float = DEFAULT_THRESHOLD) -> dict:
    """Render (or bring up to date) the site for the runs in `sources`; returns what was done."""
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    if state.get("schema") != STATE_SCHEMA:  # made by another version: every group is rendered again
        state = {"schema": STATE_SCHEMA, "groups": {}}
    run_dirs = find_runs(sources)
    pages_of = page_names(run_dirs)
    by_group = groups([load_run(d) for d in run_dirs])
    rendered, kept, pages = [], [], []
    for group, runs in by_group.items():
        fingerprint = _fingerprint([r.run_dir for r in runs])
        known = state["groups"].get(group.slug)
        if known and known["fingerprint"] == fingerprint and (out / "groups" / group.slug / "index.html").is_file():
            pages.append(GroupPage(**known["page"]))
            kept.append(group.slug)
            continue
        page = _render_group(group, runs, out, threshold, pages_of)
        state["groups"][group.slug] = {"fingerprint": fingerprint, "page": page.__dict__}
        pages.append(page)
        rendered.append(group.slug)
    changes = [c for page in pages for c in page.changes]
    changes.sort(key=lambda c: (c["direction"] != "regression", not c["gates"], c["group"]))
    (out / CHANGES_FILE).write_text(json.dumps(changes, indent=1), encoding="utf-8")
    env = environment()
    (out / "index.html").write_text(env.get_template("site_index.html.j2").render(
        groups=pages, changes=changes, script=FILTER_SCRIPT, csp=csp(FILTER_SCRIPT),
        filters={key: sorted({s[key] for p in pages for s in p.series}) for key in ("gpu", "model", "suite", "metric")}),
        encoding="utf-8")
    state_path.write_text(json.dumps(state, indent=1), encoding="utf-8")
    return {"groups": len(pages), "rendered": rendered, "kept": kept, "changes": len(changes), "runs": len(run_dirs)}


def page_names(run_dirs: list[Path]) -> dict[Path, str]:
    """Each run's page name: its run id, or where several runs share one (the rounds of different
    `bench ab` runs are all A-0, B-0, ...), its path below the runs' common folder."""
    ids = [RunManifest.read(d).run_id for d in run_dirs]
    common = Path(os.path.commonpath([str(d) for d in run_dirs])) if len(run_dirs) > 1 else run_dirs[0].parent
    return {d: (i if ids.count(i) == 1 else re.sub(r"[^A-Za-z0-9._-]+", "-", str(d.relative_to(common))))
            for d, i in zip(run_dirs, ids)}


def _render_group(group: Group, runs: list[RunData], out: Path, threshold: float,
                  pages_of: dict[Path, str]) -> GroupPage:
    folder = out / "groups" / group.slug
    folder.mkdir(parents=True, exist_ok=True)
    series = series_of(group, runs)
    changes = changes_of(series, runs)
    verdicts = against_previous(runs, threshold)
    labels = [_label(r) for r in runs]
    page = [pages_of[r.run_dir] for r in runs]
    for run, name in zip(runs, page):
        _render_run(run, out / "runs" / f"{name}.html")
    links = {id(c): _change_page(page[c.previous_index], page[c.index]) for c in changes}
    for change in changes:
        _render_change(runs[change.previous_index], runs[change.index], out / links[id(change)], threshold)
    trends = []
    for s in series:
        refs = runs[-1].baseline.references_for({"metric": s.metric, "suite": s.suite, "params": s.params}) \
            if runs[-1].baseline else []
        marks = {cp.index for cp in s.changes}
        svg = charts.trend_chart(labels, [(p.run, p.value, p.low, p.high) for p in s.points], sorted(marks),
                                 f"{s.metric} ({METRICS[s.metric].unit})", refs[0].value if refs else None)
        trends.append({"series": s, "svg": Markup(svg),  # matplotlib's SVG of numbers
                       "changes": [c for c in changes if c.metric == s.metric and c.case == s.params
                                   and c.suite == s.suite]})
    rows = [{"run": run, "page": name, "label": label, "verdict": verdict, "counts": counts,
             "checks": _check_counts(run)} for run, name, label, (verdict, counts) in zip(runs, page, labels, verdicts)]
    (folder / "index.html").write_text(environment().get_template("site_group.html.j2").render(
        group=group, rows=rows, trends=trends, changes=[(c, links[id(c)]) for c in changes], csp=csp(),
        not_comparable=NOT_COMPARABLE),
        encoding="utf-8")
    latest = rows[-1]
    return GroupPage(
        group.slug, group.title, group.gpu, group.model, group.backend, group.profile, len(runs),
        {"run_id": latest["run"].manifest.run_id, "page": latest["page"], "label": latest["label"],
         "verdict": latest["verdict"],
         "counts": latest["counts"], "checks": latest["checks"], "status": latest["run"].manifest.status},
        [c.as_dict() | {"link": links[id(c)]} for c in changes],
        [{"gpu": group.gpu, "model": group.model, "suite": s.suite, "metric": s.metric, "case": s.case,
          "anchor": s.anchor, "latest": s.points[-1].value, "unit": METRICS[s.metric].unit,
          "changes": len(s.changes), "runs": len(s.points)} for s in series])


def _label(run: RunData) -> str:
    import datetime as dt

    when = dt.datetime.fromtimestamp(run.manifest.started).strftime("%m-%d %H:%M")
    return f"{(run.manifest.git_commit or run.manifest.run_id)[:8]} {when}"


def _check_counts(run: RunData) -> dict:
    rows = checks_table(run)
    return {"passed": sum(1 for c in rows if c["passed"] is True), "failed": sum(1 for c in rows if c["passed"] is False)}


def _render_run(run: RunData, target: Path) -> None:
    from bench.report.render import context

    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(environment().get_template("report.html.j2").render(context(run)), encoding="utf-8")


def _change_page(before: str, after: str) -> str:
    return f"compare/{before}--{after}.html"


def _render_change(before: RunData, after: RunData, target: Path, threshold: float) -> None:
    from bench.report.multi import render_comparison

    if target.is_file():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    render_comparison([before.run_dir, after.run_dir], target, threshold)
