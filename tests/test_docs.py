"""The project documents its own theory: no reference to notes outside the repository, and every
``docs/<file>.md#<anchor>`` cited anywhere points to an existing heading."""

from __future__ import annotations

import subprocess

from synthetic.problems.base import family_names
from tests.doc_anchors import ROOT, anchors, dangling_references, slug


def tracked_text_files() -> list[str]:
    listing = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [f for f in listing.stdout.split() if f.endswith((".py", ".md", ".csv", ".toml", ".ini", ".j2"))]


def test_slug_follows_the_forge() -> None:
    assert slug(" Prediction R1 rate bound") == "prediction-r1-rate-bound"
    assert slug("The paper's protocol") == "the-papers-protocol"
    assert slug("Verdict N/A") == "verdict-na"


def test_theory_has_a_section_per_verdict_and_family() -> None:
    found = anchors(ROOT / "docs" / "theory.md")
    words = ("pass", "fail", "finding", "changed", "new", "na", "info", "vacuous", "skipped")
    assert {f"verdict-{w}" for w in words} <= found
    assert {f"family-{name.lower()}" for name in family_names()} | {"source-labels", "columns"} <= found


def test_no_reference_outside_the_repository_and_no_dangling_anchor() -> None:
    outside, dangling = [], []
    for name in tracked_text_files():
        if name == "tests/test_docs.py":  # it names what it looks for
            continue
        text = (ROOT / name).read_text(encoding="utf-8")
        if any(w in text for w in ("THEORY.md", "PAPER.md", "shared/notes")):
            outside.append(name)
        dangling += [f"{name}: {ref}" for ref in dangling_references(text)]
    assert outside == []
    assert dangling == []


def test_a_dangling_anchor_is_caught() -> None:
    assert dangling_references("see docs/theory.md#family-q1 and docs/theory.md#no-such-heading") == [
        "docs/theory.md#no-such-heading"
    ]
