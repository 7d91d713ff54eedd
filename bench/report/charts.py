"""Charts as inline SVG strings (matplotlib, Agg): the page stays one self-contained file."""

from __future__ import annotations

import io

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


def metric_by(frame: pd.DataFrame, metric: str, x: str, series: str | None, ylabel: str,
              reference: dict[float, float] | None = None) -> str | None:
    """Median of `metric` against parameter `x`, one line per value of `series`, min-max as bars."""
    rows = frame[frame["metric"] == metric] if not frame.empty else frame
    if rows.empty or f"p_{x}" not in rows:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    groups = rows.groupby(f"p_{series}") if series and f"p_{series}" in rows else [("", rows)]
    for name, group in groups:
        group = group.groupby(f"p_{x}").agg(value=("value", "median"), lo=("min", "min"), hi=("max", "max"))
        lo = (group["value"] - group["lo"]).fillna(0).clip(lower=0)
        hi = (group["hi"] - group["value"]).fillna(0).clip(lower=0)
        ax.errorbar(group.index, group["value"], yerr=[lo, hi], marker="o", capsize=3,
                    label=f"{series}={name}" if series else None)
    if reference:
        xs = sorted(reference)
        ax.plot(xs, [reference[k] for k in xs], "k:", marker="s", label="documented (RTX 3090)")
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    if series or reference:
        ax.legend(fontsize=7, frameon=False)
    return _svg(fig)
