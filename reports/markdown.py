"""A small Markdown subset to HTML, so that the report shows the project's docs as they are written.

The subset is what docs/theory.md uses: ``#`` headings, paragraphs, ``-`` bullet lists (with
indented continuation lines), indented code blocks (four spaces after a blank line), fenced
code blocks, pipe tables, and inline ``**bold**``, ```code``` and ``[text](target)``. A line
starting with ``1.`` continues its paragraph (no ordered lists: ``2. H_F is ...`` in the middle
of a sentence stays text). Everything is escaped; a link becomes a link only to a heading of the
same document (``#anchor`` or ``<doc>.md#anchor``), any other target stays text, so the
rendered HTML references nothing outside the report.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field

_INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|\[([^\]]+)\]\(([^)\s]+)\)")
_TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


def slug(text: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


@dataclass
class Section:
    """One ``##`` section of a document: its title, anchor and body as HTML."""

    title: str
    anchor: str
    html: str
    codes: tuple[str, ...] = ()  # its inline code spans, as written (ids, file names, commands)


@dataclass
class Document:
    """A Markdown document cut at its ``##`` headings: the text before the first one, then each."""

    title: str = ""
    intro: str = ""
    sections: list[Section] = field(default_factory=list)


def inline(text: str, link: Callable[[str], str | None]) -> str:
    """HTML of one line of inline Markdown; ``link(target)`` gives an href or None (plain text)."""
    out, last = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[last : m.start()], quote=False))
        code, bold, label, target = m.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code, quote=False)}</code>")
        elif bold is not None:
            out.append(f"<strong>{inline(bold, link)}</strong>")
        else:
            href = link(target)
            shown = inline(label, link)
            out.append(f'<a href="{html.escape(href)}">{shown}</a>' if href else shown)
        last = m.end()
    out.append(html.escape(text[last:], quote=False))
    return "".join(out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def blocks_to_html(lines: list[str], link: Callable[[str], str | None], level_offset: int = 0) -> str:
    """HTML of the block-level Markdown in ``lines`` (headings shifted by ``level_offset``)."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("```"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), len(lines))
            out.append(
                f"<pre><code>{html.escape(chr(10).join(lines[i + 1 : end]), quote=False)}</code></pre>"
            )
            i = end + 1
        elif line.startswith("    "):
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            while not lines[j - 1].strip():
                j -= 1
            code = "\n".join(row[4:] for row in lines[i:j])
            out.append(f"<pre><code>{html.escape(code, quote=False)}</code></pre>")
            i = j
        elif m := re.match(r"(#{1,6})\s+(.*)", line):
            level = min(len(m.group(1)) + level_offset, 6)
            out.append(f"<h{level}>{inline(m.group(2), link)}</h{level}>")
            i += 1
        elif line.startswith("|") and i + 1 < len(lines) and _TABLE_RULE.match(lines[i + 1]):
            head = "".join(f'<th scope="col">{inline(c, link)}</th>' for c in _cells(line))
            j, rows = i + 2, []
            while j < len(lines) and lines[j].startswith("|"):
                rows.append(
                    "<tr>" + "".join(f"<td>{inline(c, link)}</td>" for c in _cells(lines[j])) + "</tr>"
                )
                j += 1
            out.append(
                f'<div class="table-wrap"><table class="doc"><thead><tr>{head}</tr></thead>'
                f"<tbody>{''.join(rows)}</tbody></table></div>"
            )
            i = j
        elif re.match(r"[-*] ", line):
            items: list[list[str]] = []
            while i < len(lines) and (re.match(r"[-*] ", lines[i]) or lines[i].startswith("  ")):
                if re.match(r"[-*] ", lines[i]):
                    items.append([lines[i][2:].strip()])
                else:
                    items[-1].append(lines[i].strip())
                i += 1
            out.append(
                "<ul>" + "".join(f"<li>{inline(' '.join(item), link)}</li>" for item in items) + "</ul>"
            )
        else:
            j = i
            while j < len(lines) and lines[j].strip() and not _starts_block(lines, j):
                j += 1
            j = max(j, i + 1)
            out.append(f"<p>{inline(' '.join(row.strip() for row in lines[i:j]), link)}</p>")
            i = j
    return "\n".join(out)


def _starts_block(lines: list[str], j: int) -> bool:
    """Whether line ``j`` (inside a paragraph) starts another block: a heading, fence, list or table."""
    line = lines[j]
    return bool(
        re.match(r"#{1,6}\s|```|[-*] ", line)
        or (line.startswith("|") and j + 1 < len(lines) and _TABLE_RULE.match(lines[j + 1]))
    )


def parse_document(text: str, name: str, anchor_prefix: str = "", level_offset: int = 1) -> Document:
    """The document (file name ``name``) cut at its ``##`` headings, each body rendered to HTML.

    Anchors are ``anchor_prefix`` + the heading's GitHub slug; links to ``#slug`` or
    ``.../<name>#slug`` of a heading of this document point at that anchor.
    """
    lines = text.splitlines()
    title = next((m.group(1).strip() for line in lines if (m := re.match(r"#\s+(.*)", line))), "")
    starts = [i for i, line in enumerate(lines) if re.match(r"##\s", line)]
    anchors = {slug(lines[i][3:]) for i in starts}

    def link(target: str) -> str | None:
        path, _, anchor = target.partition("#")
        here = path == "" or path == name or path.endswith("/" + name)
        return f"#{anchor_prefix}{anchor}" if here and anchor in anchors else None

    body_start = next((i + 1 for i, line in enumerate(lines) if re.match(r"#\s", line)), 0)
    intro_end = starts[0] if starts else len(lines)
    doc = Document(title, blocks_to_html(lines[body_start:intro_end], link, level_offset))
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(lines)
        heading = lines[start][3:].strip()
        body = lines[start + 1 : end]
        codes = tuple(re.findall(r"`([^`]+)`", "\n".join(body)))
        doc.sections.append(
            Section(heading, anchor_prefix + slug(heading), blocks_to_html(body, link, level_offset), codes)
        )
    return doc
