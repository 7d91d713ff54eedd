"""Reports: an HTML page and a markdown summary per run, and a comparison page for several runs.

Python prepares the data (`bench.analysis.runs`), matplotlib draws the charts as inline SVG
(`bench.report.charts`), jinja2 templates lay them out with autoescaping on.
"""

from bench.report.render import render_run

__all__ = ["render_run"]
