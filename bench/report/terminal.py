"""Plain-text tables for the terminal: the session summary and `bench compare`."""

from __future__ import annotations


def text_table(rows: list[tuple[str, ...]], max_width: int) -> list[str]:
    """Left-aligned columns, each at most `max_width` wide; a rule under the header row."""
    widths = [min(max(len(row[i]) for row in rows), max_width) for i in range(len(rows[0]))]
    lines = ["  ".join(cell[:max_width].ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines
