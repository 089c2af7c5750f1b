"""The pieces a report section is made of; the template lays each out by its ``kind``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

if TYPE_CHECKING:
    from reports.store import ResultsReader


@dataclass(frozen=True)
class Notice:
    """A part of the store that is absent: what it is and the commands that produce it."""

    what: str
    commands: tuple[str, ...]
    kind: str = field(default="notice", init=False)


@dataclass(frozen=True)
class Unusable:
    """A file that exists but could not be read or lacks the columns the report needs."""

    text: str
    kind: str = field(default="unusable", init=False)


@dataclass(frozen=True)
class Heading:
    text: str
    anchor: str = ""
    kind: str = field(default="heading", init=False)


@dataclass(frozen=True)
class Text:
    text: str
    kind: str = field(default="text", init=False)


@dataclass
class Section:
    """One part of the report: an anchor, a title, a status line and its items in order."""

    id: str
    title: str
    status: str = ""
    items: list[Any] = field(default_factory=list)


@dataclass
class Track:
    """One track for the summary: its verdict counts and its rows, which become findings."""

    name: str
    verdicts: list[str] = field(default_factory=list)
    predictions: Any = None  # its predictions-like table (id, verdict, ...) for the findings summary
    outcome: list[str] = field(default_factory=list)  # one-line outcomes for the summary
    ran: bool = False
    unusable: list[str] = field(default_factory=list)  # its inputs that exist but could not be used


@dataclass(frozen=True)
class Html:
    """HTML rendered from the project's own Markdown (reports.markdown escapes every text)."""

    html: Markup
    kind: str = field(default="html", init=False)


@dataclass(frozen=True)
class Details:
    """A collapsed group: ``summary`` is always shown, ``items`` when expanded (print shows what
    the screen shows)."""

    summary: str
    items: tuple[Any, ...]
    anchor: str = ""
    kind: str = field(default="details", init=False)


def unavailable(
    reader: ResultsReader,
    name: str,
    what: str,
    commands: tuple[str, ...],
    track: Track | None = None,
) -> Notice | Unusable:
    """What a section shows for the file ``name`` (as the report names it) when it could not
    get its table: why, for a file that exists but could not be used (then also listed in
    ``track.unusable``); else that it is not run yet, and how to produce it."""
    why = reader.unusable.get(name)
    if why is None:
        return Notice(what, commands)
    if track is not None:
        track.unusable.append(name)
    return Unusable(f"{name}: {why}")
