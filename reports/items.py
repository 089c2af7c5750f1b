"""The pieces a report section is made of; the template lays each out by its ``kind``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from markupsafe import Markup


@dataclass(frozen=True)
class Notice:
    """A part of the store that is absent: what it is and the commands that produce it."""

    what: str
    commands: tuple[str, ...]
    kind: str = field(default="notice", init=False)


@dataclass(frozen=True)
class Problem:
    """A file that exists but could not be read or lacks the columns the report needs."""

    text: str
    kind: str = field(default="problem", init=False)


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


@dataclass(frozen=True, kw_only=True)
class FailingRow:
    """One FAIL of a prediction or of the regression gate, as the summary lists it.

    ``expected`` is the prediction's value or the stored baseline's accuracy."""

    track: str
    id: str
    statement: str | None
    expected: Any
    measured: Any
    tolerance: Any
    verdict: str
    details: str | None

    HEADERS: ClassVar[tuple[str, ...]] = (
        "track",
        "id",
        "statement",
        "predicted / stored",
        "measured",
        "tolerance",
        "verdict",
        "details",
    )

    def cells(self) -> list[Any]:
        """The row's cells in the order of ``HEADERS``."""
        return [
            self.track,
            self.id,
            self.statement,
            self.expected,
            self.measured,
            self.tolerance,
            self.verdict,
            self.details,
        ]


@dataclass
class Track:
    """Verdicts of one track for the summary: counts and the failing rows."""

    name: str
    verdicts: list[str] = field(default_factory=list)
    failures: list[FailingRow] = field(default_factory=list)
    ran: bool = False


@dataclass(frozen=True)
class Html:
    """HTML rendered from the project's own Markdown (reports.markdown escapes every text)."""

    html: Markup
    kind: str = field(default="html", init=False)


@dataclass(frozen=True)
class Details:
    """A collapsed group: ``summary`` is always shown, ``items`` when expanded (and in print)."""

    summary: str
    items: tuple[Any, ...]
    kind: str = field(default="details", init=False)
