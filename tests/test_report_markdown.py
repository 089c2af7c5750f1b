"""The report's Markdown subset (reports.markdown): what docs/theory.md uses, escaped, no outside links."""

from __future__ import annotations

from reports.markdown import parse_document, slug

DOC = """# Title

Intro with `code <b>` and **bold**.

## First part: R1 & co

A paragraph that runs
2. onto a line starting with a number.

- item one
  continued
- item [two](other.md#first-part-r1--co) and [here](#second) and [out](https://example.org)

    F(θ) = x < y

| a | b |
|---|---|
| `c` | d |

## Second

Text.
"""


def test_headings_cut_the_document_with_github_anchors() -> None:
    doc = parse_document(DOC, "theory.md", "t-")
    assert doc.title == "Title"
    assert doc.intro == "<p>Intro with <code>code &lt;b&gt;</code> and <strong>bold</strong>.</p>"
    assert [(s.title, s.anchor) for s in doc.sections] == [
        ("First part: R1 & co", "t-first-part-r1--co"),
        ("Second", "t-second"),
    ]
    assert slug("Verdict N/A") == "verdict-na" and slug("The paper's protocol") == "the-papers-protocol"


def test_blocks_paragraphs_lists_code_and_tables() -> None:
    body = parse_document(DOC, "theory.md", "t-").sections[0].html.splitlines()
    assert body[0] == "<p>A paragraph that runs 2. onto a line starting with a number.</p>"
    assert body[1] == (
        '<ul><li>item one continued</li><li>item two and <a href="#t-second">here</a> and out</li></ul>'
    )
    assert body[2] == "<pre><code>F(θ) = x &lt; y</code></pre>"
    assert '<th scope="col">a</th>' in body[3] and "<td><code>c</code></td>" in body[3]


def test_links_to_the_same_document_by_path_become_anchors() -> None:
    doc = parse_document(DOC.replace("other.md#", "docs/theory.md#"), "theory.md", "t-")
    assert '<a href="#t-first-part-r1--co">two</a>' in doc.sections[0].html
