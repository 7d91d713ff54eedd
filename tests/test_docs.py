"""The guide and the documentation: the README stays a guide (short, no lab notes), every link of
it and of the docs leads somewhere, and the docs build with MkDocs in strict mode."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


def test_the_readme_is_a_guide_of_at_most_300_lines_with_no_lab_notes():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    assert not re.search(r"\b(issue|session)s? ?#?\d|\bthis session\b", text, re.I)
    assert "the seed" in text.lower() and "docs/images/report.png" in text


def test_every_relative_link_of_the_readme_and_the_docs_leads_to_a_file():
    pages = [REPO / "README.md", REPO / "CHANGES.md", *sorted((REPO / "docs").rglob("*.md"))]
    dead = []
    for page in pages:
        for target, _ in LINK.findall(page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                dead.append(f"{page.relative_to(REPO)} -> {target}")
    assert dead == []


@pytest.mark.skipif(shutil.which("mkdocs") is None and not (REPO / ".venv" / "bin" / "mkdocs").exists(),
                    reason="mkdocs is not installed (pip install -e '.[test]')")
def test_the_docs_build_in_strict_mode(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
