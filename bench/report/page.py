"""The jinja2 environment every page and markdown file is rendered with: autoescaping on,
undefined names an error, and the number and time filters the templates share."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import jinja2

TEMPLATES = Path(__file__).with_name("templates")
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(["html", "html.j2"], default_for_string=True),
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["num"] = _num
    env.filters["code"] = markdown_code
    env.filters["when"] = lambda t: dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else ""
    return env


def _num(value, digits: int = 4) -> str:
    if value is None or value != value:  # None or NaN
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def markdown_code(value) -> str:
    """Text for a markdown cell as a code span: no HTML entities in a CI log, and no HTML a
    markdown renderer would interpret (inside backticks it shows `<script>` as text)."""
    text = " ".join(str(value).split()).replace("`", "'").replace("|", "\\|")
    return f"`{text}`" if text else ""
