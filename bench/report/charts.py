"""Charts as inline SVG strings (matplotlib, Agg): the page stays one self-contained file."""

from __future__ import annotations

import io
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                     "axes.spines.right": False, "figure.dpi": 96})


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]  # drop the XML prolog and doctype: the SVG is inlined in HTML


def loss_curves(curves: dict[str, list[tuple[int, float]]], target: float | None = 1.5,
                reference: list[tuple[int, float]] | None = None) -> str | None:
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for label, curve in curves.items():
        steps, losses = zip(*curve)
        ax.plot(steps, losses, label=label, linewidth=1.2)
    if reference:
        steps, losses = zip(*reference)
        ax.plot(steps, losses, "k:", marker="o", label="documented (RTX 3090)")
    if target is not None:
        ax.axhline(target, color="tab:red", linestyle="--", linewidth=0.8, label=f"target {target}")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def _label(value) -> str:
    """A parameter value as a person writes it: 2, not 2.0 (pandas turns integer columns with gaps
    into floats)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def metric_by(frame: pd.DataFrame, metric: str, x: str, series: str | None, unit: str,
              reference: dict[float, float] | None = None) -> str | None:
    """Median of `metric` against parameter `x`, one line per value of `series`; bars span the
    min to max of each case's samples. With one value of `x` there is no line to draw: grouped bars."""
    rows = frame[frame["metric"] == metric] if not frame.empty else frame
    if rows.empty or f"p_{x}" not in rows:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    groups = list(rows.groupby(f"p_{series}")) if series and f"p_{series}" in rows else [("", rows)]
    xs_all = sorted(rows[f"p_{x}"].dropna().unique())
    single_x = len(xs_all) == 1
    for k, (name, group) in enumerate(groups):
        group = group.groupby(f"p_{x}").agg(value=("value", "median"), lo=("min", "min"), hi=("max", "max"))
        lo = (group["value"] - group["lo"]).fillna(0).clip(lower=0)
        hi = (group["hi"] - group["value"]).fillna(0).clip(lower=0)
        label = f"{series} {_label(name)}" if series else None
        if single_x:
            ax.bar([k], group["value"], width=0.7, yerr=[lo, hi], capsize=3, label=label)
        else:
            ax.errorbar(group.index, group["value"], yerr=[lo, hi], marker="o", capsize=3, label=label)
    if reference and not single_x:
        ref_x = sorted(reference)
        ax.plot(ref_x, [reference[v] for v in ref_x], "k:", marker="s", label="documented (RTX 3090)")
    if single_x:
        ax.set_xticks(range(len(groups)), [_label(name) for name, _ in groups])
        ax.set_xlabel(f"{series} (all at {x} {_label(xs_all[0])})" if series else f"{x} {_label(xs_all[0])}")
    else:
        if all(float(v).is_integer() for v in xs_all):
            ax.set_xticks(xs_all, [_label(v) for v in xs_all])  # integer parameters get integer ticks
        ax.set_xlabel(x)
    ax.set_ylabel(f"{metric} ({unit})" if unit else metric)
    ax.set_title("bars: min to max of each case's samples; points: their median", fontsize=7, loc="left", color="0.35")
    if not single_x and (series or reference):
        ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


VERDICT_COLORS = {"regression": "#cf222e", "improvement": "#1a7f37", "inconclusive": "#bf8700", "unchanged": "#57606a"}


def ratio_chart(labels: list[str], ratios: list[float], lows: list[float], highs: list[float],
                thresholds: list[float | None], verdicts: list[str], better: str) -> str | None:
    """new/base ratios with the interval each verdict was judged on, one row per case, coloured by
    that verdict; the grey band is the threshold either side of 1."""
    if not labels:
        return None
    fig, ax = plt.subplots(figsize=(7.2, 0.34 * len(labels) + 1.3))
    ys = list(range(len(labels)))
    threshold = max((t for t in thresholds if t is not None), default=0.0)
    ax.axvspan(1 / (1 + threshold), 1 + threshold, color="0.92", zorder=0)
    ax.axvline(1.0, color="0.4", linewidth=0.8)
    for y, r, lo, hi, v in zip(ys, ratios, lows, highs, verdicts):
        ax.errorbar([r], [y], xerr=[[max(r - lo, 0)], [max(hi - r, 0)]], fmt="o", color=VERDICT_COLORS[v], capsize=3)
    ax.set_yticks(ys, labels, fontsize=9)
    ax.invert_yaxis()
    shown = [v for v in VERDICT_COLORS if v in verdicts]
    ax.legend(handles=[plt.Line2D([], [], marker="o", linestyle="", color=VERDICT_COLORS[v], label=v) for v in shown],
              fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.18 - 0.3 / max(len(labels), 1)),
              ncol=len(shown))
    ax.set_xlabel(f"new / base ({better} is better); bars: the interval the verdict used; grey: within ±{threshold:.0%}",
                  fontsize=9)
    return _svg(fig)


def history_chart(xlabels: list[str], series: dict[str, list[float | None]], steps: dict[str, list[int]],
                  ylabel: str, groups: dict[str, str] | None = None, per_panel: int = 3) -> str | None:
    """Each case over runs, relative to its first run (so a 0.6% wobble looks like one), in small
    multiples of a few cases of one group (suite) each instead of one tangle; dashed marks where a
    series steps."""
    drawn = {k: v for k, v in series.items() if any(x is not None for x in v)}
    if not xlabels or not drawn:
        return None
    by_group: dict[str, list[str]] = {}
    for name in drawn:
        by_group.setdefault((groups or {}).get(name, ""), []).append(name)
    panels = [names[i:i + per_panel] for names in by_group.values() for i in range(0, len(names), per_panel)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(6.4, 1.9 * len(panels) + 0.6), sharex=True, squeeze=False)
    xs = list(range(len(xlabels)))
    for ax, panel in zip(axes[:, 0], panels):
        for label in panel:
            points = [(x, v) for x, v in zip(xs, drawn[label]) if v is not None]
            first = points[0][1]
            rel = [(x, (v / first - 1) * 100 if first else 0.0) for x, v in points]
            line, = ax.plot(*zip(*rel), marker="o", markersize=3, linewidth=1, label=label)
            for k in steps.get(label, []):
                ax.axvline(points[k][0] - 0.5, color=line.get_color(), linestyle="--", linewidth=0.8)
        ax.axhline(0, color="0.6", linewidth=0.6)
        low, high = ax.get_ylim()
        if high - low < 2:  # a flat series: +-1% around it, not a float-rounding scale of 1e-6
            middle = (high + low) / 2
            ax.set_ylim(middle - 1, middle + 1)
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)
        ax.set_ylabel("% vs first run", fontsize=8)
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes[-1, 0].set_xticks(xs, xlabels, rotation=45, ha="right", fontsize=7)
    axes[0, 0].set_title(ylabel, fontsize=9, loc="left")
    return _svg(fig)


def trend_chart(xlabels: list[str], points: list[tuple[int, float, float | None, float | None]],
                changes: list[int], ylabel: str, target: float | None = None) -> str:
    """One series over the runs of its group: each run's value with its interval, the documented
    target, and the change points (indices into `points`) as dashed lines between the two runs."""
    fig, ax = plt.subplots(figsize=(6.4, 2.3))
    xs = [p[0] for p in points]
    values = [p[1] for p in points]
    low = [v - (p[2] if p[2] is not None else v) for v, p in zip(values, points)]
    high = [(p[3] if p[3] is not None else v) - v for v, p in zip(values, points)]
    ax.errorbar(xs, values, yerr=[low, high], fmt="o-", markersize=3, linewidth=1, capsize=2, color="tab:blue",
                label="run (95% interval)")
    for k in changes:
        ax.axvline((xs[k - 1] + xs[k]) / 2, color="tab:red", linestyle="--", linewidth=1)
    edges = [0, *changes, len(points)]
    for a, b in zip(edges, edges[1:]):  # each segment's median level between its change points
        ax.hlines(statistics.median(values[a:b]), xs[a] - 0.3, xs[b - 1] + 0.3, color="tab:red", linewidth=0.8,
                  alpha=0.6)
    if target is not None:
        ax.axhline(target, color="0.4", linestyle=":", linewidth=1, label=f"documented {target:g}")
    ax.set_xticks(range(len(xlabels)), xlabels, rotation=45, ha="right", fontsize=6)
    ax.set_xlim(-0.5, len(xlabels) - 0.5)
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.legend(fontsize=7, frameon=False, loc="best")
    return _svg(fig)


def memory_fit(points: list[tuple[int, float, float]], predicted, ranks: tuple[int, ...]) -> str:
    """Training peak against tokens per micro-batch: the fitted model's line for each rank and the
    measured points (rank, tokens, GB) in the same colours."""
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    top = max(t for _, t, _ in points) * 1.1
    xs = [top * i / 40 for i in range(41)]
    for i, rank in enumerate(ranks):
        colour = f"C{i}"
        ax.plot(xs, [predicted(rank, x) for x in xs], color=colour, linewidth=1, label=f"r={rank}, fitted")
        measured = [(t, gb) for r, t, gb in points if r == rank]
        if measured:
            ax.scatter(*zip(*measured), color=colour, s=14, zorder=3)
    ax.set_xlabel("tokens per micro-batch (batch x sequence length)")
    ax.set_ylabel("peak memory (GB)")
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def roofline(points: list[tuple[str, float, float]], matmul_tflops: float, copy_gbps: float) -> str | None:
    """Achieved TFLOP/s against arithmetic intensity, under the measured compute and bandwidth roofs."""
    if not points:
        return None
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    xs = np.logspace(-1, 4, 200)
    ax.plot(xs, np.minimum(matmul_tflops, copy_gbps * xs / 1000), color="0.3", linewidth=1,
            label=f"measured roof: {copy_gbps:.0f} GB/s, {matmul_tflops:.0f} TFLOP/s")
    kinds: dict[str, list[tuple[float, float]]] = {}
    for label, x, y in points:
        kinds.setdefault(label.split()[0], []).append((x, y))
    for kind, pts in kinds.items():
        ax.scatter(*zip(*pts), s=14, label=kind)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("achieved TFLOP/s")
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def latency_throughput(points: list[dict], slo: dict[str, float]) -> str | None:
    """p99 TTFT and p99 TPOT against output throughput, one line per server through its
    concurrency levels (labelled), its Poisson points as open markers; the SLOs dashed."""
    if not points:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.4))
    panels = ((axes[0], "ttft_p99_s", "p99 time to first token (s)", slo.get("ttft")),
              (axes[1], "tpot_p99_ms", "p99 time per output token (ms)", slo["tpot"] * 1000 if "tpot" in slo else None))
    for ax, key, label, limit in panels:
        drawn = [p for p in points if p.get(key) is not None and p.get("output_tok_s") is not None]
        for index, server in enumerate(dict.fromkeys(p["server"] for p in points)):
            color = f"C{index}"
            sweep = [p for p in drawn if p["server"] == server and p["kind"] == "concurrency"]
            rates = [p for p in drawn if p["server"] == server and p["kind"] == "poisson"]
            if sweep:
                ax.plot([p["output_tok_s"] for p in sweep], [p[key] for p in sweep], "-o", color=color,
                        markersize=4, linewidth=1.2, label=f"{server}: concurrency")
                for p in sweep:
                    ax.annotate(p["load"], (p["output_tok_s"], p[key]), fontsize=7, xytext=(3, 3),
                                textcoords="offset points")
            if rates:
                ax.plot([p["output_tok_s"] for p in rates], [p[key] for p in rates], "s", color=color,
                        markerfacecolor="none", markersize=5, label=f"{server}: Poisson")
        if limit is not None:
            ax.axhline(limit, color="tab:red", linestyle="--", linewidth=0.8, label="SLO")
        ax.set_xlabel("output tokens/s")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return _svg(fig)
