"""Anchors of the project's Markdown documents, as a Git forge renders them, for tests that check
every ``docs/<file>.md#<anchor>`` cited in code, docs and data files points to a heading."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = re.compile(r"docs/([\w.-]+\.md)#([\w-]+)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(document: Path) -> set[str]:
    """Anchors of every heading (any level) of a Markdown file."""
    lines = document.read_text(encoding="utf-8").splitlines()
    return {slug(line.lstrip("#")) for line in lines if re.match(r"#{1,6} ", line)}


def dangling_references(text: str) -> list[str]:
    """``docs/<file>.md#<anchor>`` references in ``text`` whose file or heading does not exist."""
    missing = []
    for name, anchor in REFERENCE.findall(text):
        document = ROOT / "docs" / name
        if not document.exists() or anchor not in anchors(document):
            missing.append(f"docs/{name}#{anchor}")
    return missing
