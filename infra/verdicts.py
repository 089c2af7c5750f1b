"""The verdict vocabulary and the prediction record shared by every check, gate and report.

Source labels say where a prediction comes from: "derived here" (derived for this project,
for the algorithm as implemented), "paper claim (shape)" (the form of the paper's result,
exact constants not available), "literature" (another paper).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

DERIVED = "derived here"
PAPER_SHAPE = "paper claim (shape)"
LITERATURE = "literature"

PASS, FAIL, NOT_APPLICABLE, INFO = "PASS", "FAIL", "N/A", "INFO"
# A bound that holds only because it is at least the top of the loss's range: true, but it
# says nothing, so it is never counted as a PASS.
VACUOUS = "VACUOUS"
# A row that could not be measured here (data absent, say); the reason is in its details.
SKIPPED = "SKIPPED"
VERDICTS = (PASS, FAIL, NOT_APPLICABLE, INFO, VACUOUS, SKIPPED)
# A paired comparison with a baseline (the study): its 95% CI is above 0, below 0, or holds 0.
BETTER, WORSE, NOT_DETECTED = "BETTER", "WORSE", "NOT DETECTED"
COMPARISONS = (BETTER, WORSE, NOT_DETECTED)


@dataclass(frozen=True, kw_only=True)
class Prediction:
    """One row of the predictions table: what theory says, what we measured, the verdict.

    Built with keywords only (eight fields, four of them strings). ``ratio`` is
    measured / predicted where both are numbers. A FAIL is a finding.
    """

    id: str
    prediction: str
    source: str
    predicted: float | None
    measured: float | None
    tolerance: str
    verdict: str
    details: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict: expected one of {VERDICTS}, got {self.verdict!r}")

    @property
    def ratio(self) -> float | None:
        if self.predicted is None or self.measured is None or self.predicted == 0:
            return None
        return self.measured / self.predicted

    def to_row(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def verdict(ok: bool) -> str:
    """PASS or FAIL."""
    return PASS if ok else FAIL
