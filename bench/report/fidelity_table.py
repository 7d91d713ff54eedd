"""The cross-check's table, for the run page, summary.md and the terminal: per figure, the harness's
value and the plain script's (geometric means over the repeats), their ratio with its 95% interval,
and the verdict; the first load on a machine beside them."""

from __future__ import annotations

from bench.analysis.fidelity import AGREES, FIDELITY_METRIC, FINDING, MOST_REPEATS, UNRESOLVED, judge, repeats_to_resolve
from bench.records.results import describe_params
from bench.analysis.stats import geometric_mean
from bench.records.results import Measurement

FIGURE_ORDER = ("load_s", "ttft_s", "decode_tok_s", "s_per_step", "peak_vram_gb")


def fidelity_rows(records: list[Measurement]) -> list[dict]:
    """The latest cross-check's figures (a run cross-checked again shows the last), in the order a
    reader takes them in: loads, generation, training."""
    checks = [r for r in records if r.metric == FIDELITY_METRIC and r.status == "ok"]
    if not checks:
        return []
    latest = max(r.extra.get("crosscheck", "") for r in checks)
    rows = []
    for r in checks:
        if r.extra.get("crosscheck", "") != latest:
            continue
        figure = r.params["figure"]
        verdict = _verdict(r)
        rows.append({
            "figure": figure, "suite": r.suite,
            "case": describe_params({k: v for k, v in r.params.items() if k != "figure"}),
            "unit": r.extra.get("unit", ""), "harness": _centre(r.extra.get("harness", [])),
            "plain": _centre(r.extra.get("plain", [])), "ratio": r.value, "low": r.extra.get("low"),
            "high": r.extra.get("high"), "verdict": verdict, "tolerance": r.extra.get("tolerance"),
            "repeats_to_resolve": (repeats_to_resolve(r.samples, r.extra["tolerance"])
                                   if verdict == UNRESOLVED and r.extra.get("tolerance") else None),
            "repeats": r.extra.get("repeats", len(r.samples)), "instruments": r.extra.get("instruments", []),
            "context_differences": r.extra.get("context_differences", [])})
    first = [r for r in records if r.metric == "load_s" and r.params.get("cache") == "first" and r.value is not None]
    if first:
        rows.append({"figure": "load_s", "suite": "load", "case": "cache=first", "unit": first[-1].unit,
                     "harness": None, "plain": first[-1].value, "ratio": None, "low": None, "high": None,
                     "verdict": "the first load on a machine (empty compile caches), plain script only",
                     "tolerance": None, "repeats": 1, "repeats_to_resolve": None})
    order = {name: i for i, name in enumerate(FIGURE_ORDER)}
    return sorted(rows, key=lambda row: (order.get(row["figure"], len(order)), row["ratio"] is None))


def fidelity_headline(rows: list[dict]) -> str | None:
    """One line: how many figures agree, how many repeats would resolve the rest, and each finding
    with its ratio."""
    judged = [row for row in rows if row["ratio"] is not None]
    if not judged:
        return None
    findings = [row for row in judged if row["verdict"] == FINDING]
    agree = sum(1 for row in judged if row["verdict"] == AGREES)
    text = (f"cross-check against a plain script ({judged[0]['repeats']} interleaved repeat{'s' if judged[0]['repeats'] != 1 else ''}): {agree} of "
            f"{len(judged)} figures agree within tolerance, {len(findings)} finding{'s' if len(findings) != 1 else ''}, "
            f"{len(judged) - agree - len(findings)} unresolved")
    text += _resolving(judged)
    if findings:
        text += "; " + "; ".join(f"{row['figure']} {row['case']}: harness/plain {row['ratio']:.3g}x "
                                 f"({row['low']:.3g}-{row['high']:.3g})" for row in findings)
    return text


def _resolving(judged: list[dict]) -> str:
    """What the unresolved figures need: the most repeats any of them needs at the scatter measured."""
    needs = [row["repeats_to_resolve"] for row in judged if row["verdict"] == UNRESOLVED]
    if not needs or judged[0]["repeats"] < 2:  # one repeat has no scatter to go by
        return ""
    known = [n for n in needs if n is not None]
    if not known:
        return f" (at the scatter measured, more than {MOST_REPEATS} repeats would be needed to resolve them)"
    beyond = len(needs) - len(known)
    rest = f"; {beyond} would need more than {MOST_REPEATS}" if beyond else ""
    return (f" (at the scatter measured, --crosscheck-repeats {max(known)} would likely resolve "
            f"{'the others' if beyond else 'them'}{rest})")


def instrument_rows(rows: list[dict]) -> list[dict]:
    """One row per step of a figure's attribution (the plain script with one of the harness's
    instruments, then the harness against the instrumented script; the plain timing inside the
    harness's process against the plain script, then the harness against it): which side over
    which, the ratio and its 95% interval."""
    return [{"figure": row["figure"], "case": row["case"], **step}
            for row in rows for step in row.get("instruments", [])]


def context_rows(rows: list[dict]) -> list[dict]:
    """One row per setting in which the harness's generating process differed from the plain
    script's (threads, priority, the collector, tuning variables, other processes on the GPU)."""
    return [{"case": row["case"], **difference} for row in rows for difference in row.get("context_differences", [])]


def _verdict(record: Measurement) -> str:
    """The verdict by today's rule from what the record kept (a run judged by an older rule is
    shown as today's code judges it); the stored one where something is missing."""
    extra = record.extra
    kept = (record.value, extra.get("low"), extra.get("high"), extra.get("tolerance"), extra.get("repeats"))
    return judge(*kept) if None not in kept else extra.get("verdict", "")


def _centre(per_repeat: list[list[float]]) -> float | None:
    """The geometric mean of each repeat's geometric mean: the figure the ratio is a ratio of."""
    means = [geometric_mean(run) for run in per_repeat if run]
    return geometric_mean(means) if means else None
