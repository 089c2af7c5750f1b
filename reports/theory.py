"""The report's theory section: docs/theory.md itself, rendered, so the two never differ.

Every ``##`` section of the document becomes a subsection with the document's own anchor
(prefixed ``theory-``), so the findings summary and the predictions tables can link to the
statement, the assumptions and the meaning of each verdict and column they show.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from markupsafe import Markup, escape

from infra.paths import repo_root
from reports.items import Html, Section, Text
from reports.markdown import Document, parse_document, slug
from reports.store import ResultsReader

DEFAULT_THEORY = repo_root() / "docs" / "theory.md"
ANCHOR_PREFIX = "theory-"


def theory_anchor(reference: str) -> str:
    """The report's anchor of a theory reference: 'docs/theory.md#family-q1', '#family-q1' or a
    heading's text ('Family Q1') -> 'theory-family-q1'."""
    text = str(reference)
    return ANCHOR_PREFIX + (text.split("#", 1)[1] if "#" in text else slug(text))


def read_theory(reader: ResultsReader, path: Path) -> Document | None:
    """The theory document cut into sections (None when the file is absent or unreadable)."""
    text = reader.text(path)
    return None if text is None else parse_document(text, path.name, ANCHOR_PREFIX, level_offset=2)


def theory_section(document: Document | None, path: Path) -> Section:
    """Every section of the theory document, in its order, under its own anchor."""
    section = Section("theory", "Theory: what is predicted, and what the words mean")
    if document is None:
        section.items.append(
            Text(f"The theory document {path} was not found (an installed package carries no docs/).")
        )
        section.status = "document not found"
        return section
    contents = "".join(f'<li><a href="#{s.anchor}">{escape(s.title)}</a></li>' for s in document.sections)
    section.items.append(Html(Markup(f'{document.intro}<nav class="doc-contents"><ol>{contents}</ol></nav>')))
    for part in document.sections:
        section.items.append(Html(Markup(f'<h3 id="{part.anchor}">{escape(part.title)}</h3>\n{part.html}')))
    section.status = f"{len(document.sections)} sections of docs/theory.md"
    return section


def claim_sections(document: Document | None) -> Callable[[str], str]:
    """claim -> the report anchor of the first theory section naming its rows in code
    (`rate.bound/<method>...` names the claim "rate.bound"); '' when none does."""
    sections = document.sections if document is not None else []

    def lookup(claim: str) -> str:
        for part in sections:
            if any(code == claim or code.startswith(claim + "/") for code in part.codes):
                return part.anchor
        return ""

    return lookup
