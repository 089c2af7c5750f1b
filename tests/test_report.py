"""``sharpmaml report``: tables, verdicts, figures and their numbers, self-containment, determinism.

The HTML is parsed with the standard library's html.parser; the store is the small one of
tests/report_fixtures.py, whose numbers make every finding checkable.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.config import METHODS
from infra.cli import main
from infra.errors import EXIT_USAGE
from infra.paths import RESULTS_ENV
from infra.verdicts import FAIL, VERDICTS
from reports import figures
from reports.accuracy import difference
from reports.build import build_report, group_of, training_cost_table
from reports.markdown import slug
from reports.methods import METHOD_LOOKS, PALETTE, contrast, method_label, readable
from synthetic.checks.common import curve_frame
from tests import report_fixtures as fx

SVG_NAMESPACES = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


@dataclass
class ParsedTable:
    caption: str = ""
    headers: list[str] = field(default_factory=list)
    rows: list[list[tuple[str, str]]] = field(default_factory=list)  # (text, class) per cell
    groups: list[str] = field(default_factory=list)  # the texts of heading rows (one cell over every column)
    position: int = 0

    def column(self, name: str) -> list[str]:
        i = self.headers.index(name)
        return [row[i][0] for row in self.rows]

    def records(self) -> list[dict[str, str]]:
        return [{h: cell[0] for h, cell in zip(self.headers, row)} for row in self.rows]


@dataclass
class ParsedFigure:
    id: str
    caption: str = ""
    alt: str = ""
    src: str = ""
    tables: int = 0


class ReportParser(HTMLParser):
    """Collects tables, figures, notices, unusable items, the banner's lines, links, sources and
    section ids in order."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[ParsedTable] = []
        self.figures: list[ParsedFigure] = []
        self.sections: list[str] = []
        self.notices: list[str] = []
        self.unusable: list[str] = []
        self.banner: list[str] = []
        self.footnotes: list[str] = []
        self.hrefs: list[str] = []
        self.srcs: list[str] = []
        self.tags: set[str] = set()
        self._stack: list[tuple[str, dict]] = []
        self._text: list[str] | None = None
        self._cell_class = ""
        self._row: list[tuple[str, str]] | None = None
        self._block: list[str] | None = None
        self._block_kind = ""
        self._figcaption: list[str] | None = None
        self._banner_line: list[str] | None = None
        self._count = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        self._count += 1
        self._stack.append((tag, a))
        if "href" in a:
            self.hrefs.append(a["href"])
        if "src" in a:
            self.srcs.append(a["src"])
        if tag == "section":
            self.sections.append(a["id"])
        elif tag == "figure":
            self.figures.append(ParsedFigure(a["id"]))
        elif tag == "figcaption":
            self._figcaption = []
        elif tag == "li" and any(a.get("class") == "unusable-banner" for _, a in self._stack[:-1]):
            self._banner_line = []
        elif tag == "img" and self._inside("figure"):
            self.figures[-1].alt, self.figures[-1].src = a.get("alt", ""), a["src"]
        elif tag == "table":
            self.tables.append(ParsedTable(position=self._count))
            if self._inside("figure"):
                self.figures[-1].tables += 1
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th", "caption"):
            self._text, self._cell_class = [], a.get("class", "")
        elif (tag == "div" and a.get("class") in ("notice", "unusable")) or (
            tag == "ul" and a.get("class") == "footnotes"
        ):
            self._block, self._block_kind = [], a["class"]

    def handle_endtag(self, tag: str) -> None:
        while self._stack and self._stack.pop()[0] != tag:
            pass
        if tag in ("td", "th", "caption") and self._text is not None:
            text = " ".join("".join(self._text).split())
            if tag == "caption":
                self.tables[-1].caption = text
            elif tag == "th":
                self.tables[-1].headers.append(text)
            else:
                self._row.append((text, self._cell_class))
            self._text = None
        elif tag == "tr" and self._row:
            if len(self._row) == 1 and "group" in self._row[0][1].split():
                self.tables[-1].groups.append(self._row[0][0])
            else:
                self.tables[-1].rows.append(self._row)
            self._row = None
        elif tag == "figcaption":
            self.figures[-1].caption = " ".join("".join(self._figcaption).split())
            self._figcaption = None
        elif tag == "li" and self._banner_line is not None:
            self.banner.append(" ".join("".join(self._banner_line).split()))
            self._banner_line = None
        elif tag in ("div", "ul") and self._block is not None:
            text = " ".join("".join(self._block).split())
            blocks = {"notice": self.notices, "unusable": self.unusable, "footnotes": self.footnotes}
            blocks[self._block_kind].append(text)
            self._block = None

    def handle_data(self, data: str) -> None:
        for buffer in (self._text, self._figcaption, self._block, self._banner_line):
            if buffer is not None:
                buffer.append(data)

    def _inside(self, tag: str) -> bool:
        """Whether the element just opened lies inside a ``tag`` element."""
        return any(t == tag for t, _ in self._stack[:-1])

    def table(self, caption_start: str) -> ParsedTable:
        found = [t for t in self.tables if t.caption.startswith(caption_start)]
        assert len(found) == 1, (
            f"expected one table '{caption_start}', found {[t.caption for t in self.tables]}"
        )
        return found[0]

    def figure(self, fid: str) -> ParsedFigure:
        return next(f for f in self.figures if f.id == fid)


def parse(html: str) -> ReportParser:
    parser = ReportParser()
    parser.feed(html)
    parser.close()
    return parser


def build(root: Path, out: Path, baselines: Path | None = None) -> int:
    args = ["report", "--results", str(root), "--out", str(out)]
    return main(args + (["--baselines", str(baselines)] if baselines is not None else []))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("store") / "results"
    return root, fx.write_store(root)


@pytest.fixture(scope="module")
def html(store) -> str:
    root, baselines = store
    assert build(root, root / "report.html", baselines) == 0
    return (root / "report.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def report(html) -> ReportParser:
    return parse(html)


# ----- summary, verdicts, tables ---------------------------------------------------------------


def test_summary_counts_every_verdict_per_track(report) -> None:
    counts = {r["track"]: r for r in report.table("Verdicts per track").records()}
    for track, predictions in (
        ("synthetic", fx.SYNTHETIC_PREDICTIONS),
        ("generalization", fx.GEN_PREDICTIONS),
    ):
        expected = pd.Series([p.verdict for p in predictions]).value_counts()
        assert {v: int(counts[track][v]) for v in expected.index} == expected.to_dict()
        assert counts[track]["rows"] == str(len(predictions))
    gate = counts["real data (regression gate)"]
    assert (gate["FAIL"], gate["PASS"]) == ("1", "1")


def test_findings_come_first_one_line_per_claim_and_cause(report) -> None:
    assert report.sections[0] == "summary"
    findings = report.table("Findings").records()
    words = [f["verdict"] for f in findings]
    assert words == sorted(words, key=lambda w: (w != FAIL, w != "PASS"))  # failing lines first
    flat = findings[0]  # the two FAIL rows of "flat" share the group: one line, its settings listed
    assert (flat["track"], flat["verdict"], flat["rows"]) == ("synthetic", FAIL, "2 FAIL")
    assert flat["settings"] == "basin, stall" and flat["table"] == "flat"
    assert "2 of 2 rows break their rule" in flat["reason"]
    gate = next(f for f in findings if f["track"] == "real data (regression gate)" and f["verdict"] == FAIL)
    assert gate["settings"] == "omniglot-5w1s-sharp_both-ci"
    rate = next(f for f in findings if f["table"] == "rate.bound")
    assert (rate["rows"], rate["verdict"], rate["settings"]) == (
        "1 PASS, 1 N/A",
        "PASS",
        "maml, sharp_low:sqrt",
    )
    assert rate["theory"] == "statement"  # docs/theory.md names the rows of rate.bound
    assert "#synthetic-pred-rate" in report.hrefs and "#theory-prediction-r1-rate-bound" in report.hrefs
    failing = {f["table"] for f in findings if f["verdict"] == FAIL}
    assert failing == {"flat", "gen.sharpness", "gate"}
    predictions = [t for t in report.tables if t.caption.startswith("Predictions")]
    assert report.table("Findings").position < min(t.position for t in predictions)
    first = predictions[0]  # the synthetic "flat" group holds the FAILs: it leads, FAIL rows first
    assert first.caption.startswith("Predictions 'flat'")
    assert first.column("verdict")[:2] == [FAIL, FAIL]


def test_expected_failures_show_their_outcome_grouped_by_the_section_explaining_them(tmp_path) -> None:
    root = tmp_path / "results"
    fx.write_store(root, generalization=False, realdata=False)
    frame = fx.predictions_frame(fx.SYNTHETIC_PREDICTIONS)
    failing = frame["verdict"] == FAIL
    section = "docs/theory.md#finding-flat-basin-not-reached"
    frame = frame.assign(
        expected=frame["verdict"],
        outcome=np.where(failing, "FINDING", frame["verdict"]),
        expected_reason=np.where(failing, "one ascent step stalls before the barrier", ""),
        expected_section=np.where(failing, section, ""),
    )
    frame.to_parquet(root / "synthetic" / "predictions.parquet")
    report = parse(build_report(root, tmp_path / "none.csv").html)
    line = report.table("Findings").records()[0]
    assert (line["verdict"], line["rows"]) == ("FINDING", "2 FINDING")
    assert line["claim"] == "Finding flat basin not reached"  # the explaining section's title
    assert line["reason"] == "one ascent step stalls before the barrier"
    assert "#theory-finding-flat-basin-not-reached" in report.hrefs
    flat = report.table("Predictions 'flat'")
    assert flat.column("outcome")[:2] == ["FINDING", "FINDING"] and flat.column("verdict")[:2] == [FAIL, FAIL]


def test_self_checks_are_collapsed_per_family_after_the_predictions(html, report) -> None:
    assert not any(t.caption.startswith("Predictions 'smooth'") for t in report.tables)
    summaries = re.findall(r'<details id="([^"]+)">\s*<summary>([^<]+)</summary>', html)
    assert summaries == [
        (
            "synthetic-selfcheck-q1",
            "Family Q1: 1 self-check row (1 PASS); 5 constants, 1 verification (1 PASS)",
        ),
        ("synthetic-selfcheck-e2", "Family E2: 0 constants, 1 verification (1 FAIL)"),
    ]
    checks = report.table("Self-checks of Q1")
    assert checks.column("id") == ["smooth/Q1/L_F"]
    generalization = report.table("Predictions 'gen'").position
    synthetic = [
        t.position
        for t in report.tables
        if t.caption.startswith("Predictions") and t.position < generalization
    ]
    assert max(synthetic) < checks.position < generalization


def test_prediction_tables_hold_every_row_with_its_verdict(report) -> None:
    shown = {}
    for t in report.tables:
        if t.caption.startswith(("Predictions", "Self-checks")):
            shown.update({r["id"]: r for r in t.records()})
    for p in fx.SYNTHETIC_PREDICTIONS + fx.GEN_PREDICTIONS:
        assert shown[p.id]["verdict"] == p.verdict
        if p.measured is not None:
            assert shown[p.id]["measured"] == f"{p.measured:.4g}"


def test_status_is_a_word_and_colour_only_repeats_it(report) -> None:
    cells = [cell for t in report.tables for row in t.rows for cell in row if "verdict" in cell[1].split()]
    assert cells
    for text, cls in cells:
        assert text in VERDICTS
        assert ("v-fail" in cls) == (text == FAIL) and ("v-pass" in cls) == (text == "PASS")


def test_groups_are_id_prefixes() -> None:
    assert [
        group_of(i) for i in ("rate.bound/maml/B8", "flat/E2/basin", "bias.shift_slope", "smooth/Q1/L")
    ] == ["rate", "flat", "bias", "smooth"]


def test_every_method_has_one_label_and_look_with_readable_colours() -> None:
    assert list(METHOD_LOOKS) == list(METHODS)
    assert len({look.label for look in METHOD_LOOKS.values()}) == len(METHODS)
    assert len({(look.marker, str(look.line)) for look in METHOD_LOOKS.values()}) == len(METHODS)
    assert method_label("sharp_up") == "Sharp-MAML_up" and method_label("reptile") == "reptile"
    assert min(contrast(c) for c in PALETTE) >= 3.0
    assert contrast("#000000") == pytest.approx(21.0) and contrast("#ffffff") == pytest.approx(1.0)
    assert readable("#0173b2") == "#0173b2"  # already readable: unchanged
    darker = readable("#ece133")  # yellow: 1.4:1 on white
    assert 3.0 <= contrast(darker) < 3.1


def test_the_report_command_does_not_import_torch(tmp_path) -> None:
    code = (
        "import sys; from infra.cli import main; "
        f"rc = main(['report', '--results', {str(tmp_path)!r}, '--out', {str(tmp_path / 'r.html')!r}]); "
        "print(rc, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.stdout.split()[-2:] == ["0", "False"], done.stderr[-2000:]


# ----- figures ---------------------------------------------------------------------------------


def test_every_figure_has_alt_with_numbers_and_a_table(report) -> None:
    ids = [f.id for f in report.figures]
    assert ids == [
        "fig-rate",
        "fig-iterations",
        "fig-floor",
        "fig-bias",
        "fig-curves-flat",
        "fig-generalization",
        "fig-accuracy",
        "fig-cost",
    ]
    for f in report.figures:
        assert re.search(r"\d", f.caption), f.id  # the finding, with its numbers
        assert re.match(r"(Chart|\d+ panels)", f.alt) and f.alt not in f.caption  # what is drawn
        assert f.tables == 1
        assert f.src.startswith("data:image/svg+xml;base64,")
        svg = base64.b64decode(f.src.split(",", 1)[1])
        assert svg.startswith(b"<svg") and svg.rstrip().endswith(b"</svg>")


def test_figure_findings_state_the_data(report) -> None:
    rate = report.figure("fig-rate").caption
    assert "slope -0.5 over T = 100 to 1000" in rate and "every mean is below R1" in rate
    assert "in 2 of 2 (eta, alpha) lanes" in report.figure("fig-floor").caption
    bias = report.figure("fig-bias").caption
    assert "slope 1 in alpha_low" in bias and "slope 2 (predicted 2)" in bias
    gen = report.figure("fig-generalization").caption
    assert "Foret-style bound holds in 36 of 36 runs" in gen and "slope in M is -0.5" in gen
    two_seeds = [acc for m, _, _, _, acc, _ in fx.EVALUATIONS if m == "maml"]
    ci = stats.t.ppf(0.975, 1) * np.std(two_seeds, ddof=1) / np.sqrt(2)
    assert f"MAML measured (ci) {np.mean(two_seeds):.2f} ± {ci:.2f}%" in report.figure("fig-accuracy").caption
    assert "×2.50 (engine, vmap)" in report.figure("fig-cost").caption


def test_generalization_finding_counts_a_planted_violation() -> None:
    runs = fx.generalization_runs()
    runs.loc[runs.index[0], "gap"] = 5.0  # above both right-hand sides
    alt = figures.generalization_figure(runs).finding
    assert "Foret-style bound holds in 35 of 36 runs" in alt
    assert "PAC-Bayes-kl bound holds in 35 of 36 runs" in alt
    l2 = runs[runs["family"] == "L2"]
    flagged = l2.assign(foret_holds=True, foret_vacuous=l2["M"] < 100)  # the suite's own columns win
    assert (
        "Foret-style bound holds in 36 of 36 runs (vacuous, RHS ≥ 1, in 12)"
        in figures.generalization_figure(flagged).finding
    )


def test_flat_figure_shows_where_runs_end_against_both_minima_and_the_robust_one() -> None:
    z = np.linspace(-0.5, 2.5, 601)
    f = -np.exp(-(z**2) / (2 * 0.1**2)) - 0.9 * np.exp(-((z - 2) ** 2) / 2)  # sharp at 0, flat at 2
    barrier = float(z[(z > 0) & (z < 2)][np.argmax(f[(z > 0) & (z < 2)])])
    profiles = pd.DataFrame({"family": "E2", "z": z, "F": f, "barrier": barrier})
    runs = pd.DataFrame(
        [
            {"check": "flat", "family": fam, "alpha": a, "start": s, "z_end": end, "z_robust": rob}
            for fam in ("E2", "E2-d5")
            for a, end, rob in ((0.0, 0.0, 0.0), (0.3, 0.25, 2.0))
            for s in (-0.2, 0.1)
        ]
    )
    figure = figures.flat_figure(runs, profiles)
    assert figure.finding.startswith("Sharp minimum z = 0, flat minimum z = 2,")
    assert (
        "α = 0.3: robust minimiser z = 2 (flat basin), runs end at z = 0.25: 0 of 4 at the robust minimiser "
        "(within 0.2), 0 past the barrier" in figure.finding
    )
    # the panels count the runs that reach the robust minimiser, not those that pass the barrier
    assert figure.alt.startswith("2 panels (α = 0 (MAML): 4 of 4 runs end at the α-robust minimiser (z = 0);")
    assert "α = 0.3 (Sharp-MAML_up): 0 of 4 runs end at the α-robust minimiser (z = 2)" in figure.alt
    assert "end of a run, E2-d5" in figure.alt and "α-robust minimiser" in figure.alt
    assert len(figure.table) == 8
    robust = figures.robust_profile(z, f, 0.3)
    assert z[np.nanargmin(robust)] == pytest.approx(2.0, abs=0.01)  # the flat basin wins at alpha 0.3


def test_other_curve_groups_get_one_band_per_distinct_lane_setting() -> None:
    curve = np.vstack([1.0 / (1 + np.arange(5))] * 4)
    curves = curve_frame("flat/E2/sharp_up", np.arange(5), curve)
    runs = pd.DataFrame(
        {
            "run_id": "flat/E2/sharp_up",
            "lane": range(4),
            "method": "sharp_up",
            "alpha": [0.0, 0.0, 0.1, 0.1],
            "start": [-0.1, 0.2, -0.1, 0.2],
        }
    )
    figure = figures.curve_group_figure(curves, runs, "flat")
    rows = {r[0].text: r[1].text for r in figure.table.rows}
    assert rows == {"alpha = 0": "2", "alpha = 0.1": "2"}  # starting points pooled, radii apart


def test_rate_figure_table_holds_r1_from_the_formula(report) -> None:
    from synthetic.theory import r1_bound, rate_step_size

    numbers = next(t for t in report.tables if "R1" in t.headers and "series" in t.headers)
    maml = [r for r in numbers.records() if r["series"] == "MAML"]
    c = fx.CONSTANTS
    expected = [
        r1_bound(c["Delta"], rate_step_size(T, c["L_bar"]), T, c["L_bar"], 0.0, c["sigma2"], 8)
        for T in fx.HORIZONS
    ]
    assert [float(r["R1"]) for r in maml] == pytest.approx(expected, rel=1e-3)


# ----- theory ---------------------------------------------------------------------------------


def test_theory_section_is_docs_theory_md(html, report) -> None:
    from reports.theory import DEFAULT_THEORY

    text = DEFAULT_THEORY.read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert len(headings) >= 10
    shown = re.findall(r'<h3 id="theory-([^"]+)">([^<]+)</h3>', html)
    assert [title for _, title in shown] == [h.replace("'", "&#39;") for h in headings]
    assert [anchor for anchor, _ in shown] == [slug(h) for h in headings]
    first = next(p for p in text.split("\n\n") if p and not p.startswith("#"))  # the intro paragraph
    assert " ".join(first.split()[:8]) in html
    assert "repository: docs/theory.md" in report.table("Results files read").column("file")
    assert report.sections[-2:] == ["theory", "provenance"]


def test_without_the_theory_document_the_section_says_so(tmp_path) -> None:
    html = build_report(tmp_path / "absent", tmp_path / "absent.csv", tmp_path / "no-theory.md").html
    assert "no-theory.md was not found" in html and 'id="theory-' not in html.replace('id="theory-title"', "")


# ----- real data --------------------------------------------------------------------------------


def test_each_setting_puts_the_paper_next_to_the_measurement(report) -> None:
    table = report.table("omniglot 5-way 1-shot: the paper next to the measurement")
    rows = [(r["origin"], r["method"], r) for r in table.records()]
    paper = [r for origin, _, r in rows if origin == "paper"]
    assert [(r["method"], r["accuracy % ± 95% CI"]) for r in paper] == [
        ("MAML", "98.70 ± 0.40"),
        ("MAML", "96.00"),
        ("Sharp-MAML_both", "97.50"),  # shown although no measured row has the paper's radii
    ]
    assert paper[2]["Δ vs MAML (points, 95% CI)"] == "+1.50 (no CI given)"  # against the same paper's MAML
    footnotes = {r["source"][-3:] for r in paper}
    assert footnotes == {"[1]", "[2]"} and "no CI given in the paper" in report.footnotes[0]
    measured = {m: r for origin, m, r in rows if origin.startswith("measured")}
    two_seeds = [acc for m, _, _, _, acc, _ in fx.EVALUATIONS if m == "maml"]
    ci = stats.t.ppf(0.975, 1) * np.std(two_seeds, ddof=1) / np.sqrt(2)
    assert measured["MAML"]["accuracy % ± 95% CI"] == f"{np.mean(two_seeds):.2f} ± {ci:.2f} (t over 2 seeds)"
    assert (measured["MAML"]["seeds"], measured["MAML"]["iterations"]) == ("2", "300")
    sharp = measured["Sharp-MAML_both"]
    assert sharp["accuracy % ± 95% CI"].startswith("91.00 ± 0.80")  # one seed: its episode CI
    assert sharp["Δ vs MAML (points, 95% CI)"] == f"+0.00 ± {np.hypot(ci, 0.8):.2f} (unpaired)"
    assert (sharp["gate"], measured["MAML"]["gate"]) == (FAIL, "PASS")  # details in the gate's table
    stored = [r for origin, _, r in rows if origin == "stored baseline (ci)"]
    assert [r["accuracy % ± 95% CI"] for r in stored] == ["91.50 ± 0.70"]
    assert report.table("Regression gate").column("verdict")[0] == FAIL
    assert "reptile" in report.table("Stored baselines").column("method")  # another paper's method:
    assert not any("reptile" in row for row in report.figure("fig-accuracy").caption.split(";"))  # table only


def test_paired_difference_over_common_seeds() -> None:
    row = {"accuracy": 91.0, "ci95": 1.0, "per_seed": {"0": 91.0, "1": 92.0, "2": 90.0}}
    maml = {"accuracy": 90.0, "ci95": 1.0, "per_seed": {"0": 90.0, "1": 90.5, "2": 89.5}}
    diff = difference(row, maml)
    assert diff.value == pytest.approx(1.0) and diff.basis == "paired over 3 seeds"
    d = np.array([1.0, 1.5, 0.5])
    assert diff.ci95 == pytest.approx(stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3))


def test_the_report_reads_baselines_through_their_loader(tmp_path) -> None:
    root = tmp_path / "results"
    baselines = fx.write_store(root, synthetic=False, generalization=False)
    text = baselines.read_text(encoding="utf-8")
    baselines.write_text(text.replace(",paper,omniglot,5,", ",paper,omniglot,,", 1), encoding="utf-8")
    report = parse(build_report(root, baselines, tmp_path / "none.md").html)
    assert any("line 2, column 'ways'" in p for p in report.unusable)
    assert not any(t.caption.startswith("Stored baselines") for t in report.tables)


def test_cost_tables_give_ratios_against_maml(report) -> None:
    speed = report.table("Speed benchmark").records()
    assert {r["× MAML"] for r in speed if r["method"] == "Sharp-MAML_both"} == {"2.5"}
    assert {r["peak memory (MiB)"] for r in speed} == {"not measured (CPU)"}
    runs = {r["method"]: r for r in report.table("Training runs").records()}
    assert runs["Sharp-MAML_both"]["× MAML (same preset, device)"] == "2.5"
    assert runs["MAML"]["ms / meta-iteration"] == "100"


# ----- self-contained, deterministic, robust --------------------------------------------------------


def test_nothing_external_is_referenced(html, report) -> None:
    assert not re.search(r"(?i)https?://|ftp://|\bsrc=\"//|url\(|@import", html)
    assert not report.tags & {"script", "link", "iframe", "object", "embed", "base"}
    assert all(h.startswith("#") for h in report.hrefs)
    assert report.srcs and all(s.startswith("data:image/svg+xml;base64,") for s in report.srcs)
    for src in report.srcs:
        svg = base64.b64decode(src.split(",", 1)[1]).decode()
        assert set(re.findall(r"https?://[^\"'\s)]+", svg)) <= SVG_NAMESPACES
        assert all(ref.startswith("#") for ref in re.findall(r'href="([^"]*)"', svg))
        assert "<image" not in svg and "url(" not in svg.replace("url(#", "")
    assert "Content-Security-Policy" in html


def test_building_twice_gives_the_same_bytes(store, html, tmp_path) -> None:
    root, baselines = store
    os.utime(root / "synthetic" / "runs.parquet", (1, 1))  # mtimes do not enter the report
    assert build(root, tmp_path / "again.html", baselines) == 0
    assert (tmp_path / "again.html").read_text(encoding="utf-8") == html


def test_absent_parts_say_not_run_yet_with_their_command(tmp_path, capsys) -> None:
    root = tmp_path / "results"
    root.mkdir()
    assert build(root, tmp_path / "r.html", tmp_path / "no-baselines.csv") == 0
    report = parse((tmp_path / "r.html").read_text(encoding="utf-8"))
    text = " ".join(report.notices)
    assert len(report.notices) == 8 and not report.unusable and not report.figures
    for command in (
        f"sharpmaml convergence --out {root.as_posix()}/synthetic",
        "tox -e generalization",
        "sharpmaml evaluate",
        "sharpmaml baselines check",
        "sharpmaml train",
        "benchmarks/realdata_speed.py",
        "sharpmaml baselines update",
        "sharpmaml study DIR --out results/realdata/study",
    ):
        assert command in text
    assert {r["rows"] for r in report.table("Verdicts per track").records()} == {"not run yet"}


def test_default_results_folder_may_not_exist_yet(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    assert main(["report"]) == 0
    assert "Not run yet" in (tmp_path / "store" / "report.html").read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # nothing in the working folder


def test_partial_store_reports_what_is_there(tmp_path) -> None:
    fx.write_store(tmp_path / "results", generalization=False, realdata=False)
    assert build(tmp_path / "results", tmp_path / "r.html") == 0
    report = parse((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert "fig-rate" in [f.id for f in report.figures]
    assert any("generalization predictions" in n for n in report.notices)
    assert any("test-set evaluations" in n for n in report.notices)


def test_unusable_files_are_named_in_a_banner_and_never_taken_for_absent_ones(tmp_path) -> None:
    root = tmp_path / "results"
    fx.write_store(root, generalization=False)
    good = root / "synthetic" / "predictions.parquet"
    good.write_bytes(good.read_bytes()[:-200])  # truncated: the footer is gone
    fx.evaluations().drop(columns=["accuracy"]).to_parquet(root / "realdata" / "evaluations.parquet")
    built = build_report(root, tmp_path / "absent.csv")
    report = parse(built.html)
    assert [line.split(":")[0] for line in report.banner] == [
        "synthetic/predictions.parquet",
        "realdata/evaluations.parquet",
    ]
    assert report.banner == built.unusable
    assert "cannot read" in report.banner[0] and "lacks the columns accuracy" in report.banner[1]
    assert built.html.index('class="unusable-banner"') < built.html.index("<h1>")  # top of the page
    assert any("synthetic/predictions.parquet: cannot read" in p for p in report.unusable)
    assert any("realdata/evaluations.parquet: lacks the columns accuracy" in p for p in report.unusable)
    assert not any("synthetic predictions" in n or "test-set evaluations" in n for n in report.notices)
    tracks = {r["track"]: r["rows"] for r in report.table("Verdicts per track").records()}
    assert tracks["synthetic"] == "could not use" and tracks["generalization"] == "not run yet"
    assert "incomplete: inputs could not be used" in built.html
    assert "synthetic (synthetic/predictions.parquet)" in " ".join(report.unusable)
    files = report.table("Results files read").column("file")
    assert "synthetic/predictions.parquet" not in files and "realdata/evaluations.parquet" in files


def test_a_complete_store_has_no_banner(report) -> None:
    assert report.banner == [] and not report.unusable


def test_bad_arguments_exit_4(tmp_path, capsys) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert build(a_file, tmp_path / "r.html") == EXIT_USAGE
    assert "--results: expected a results folder" in capsys.readouterr().err
    assert build(tmp_path / "absent", tmp_path / "r.html") == EXIT_USAGE
    assert "not found" in capsys.readouterr().err
    assert build(tmp_path, tmp_path) == EXIT_USAGE
    assert "--out: expected an HTML file path" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


@pytest.mark.slow
def test_report_of_the_real_quick_suite(tmp_path) -> None:
    """The convergence suite's own output (not hand-built frames) gives every synthetic figure."""
    root = tmp_path / "results"
    assert main(["convergence", "--quick", "--out", str(root / "synthetic"), "--no-progress"]) in (0, 1)
    assert build(root, tmp_path / "r.html", tmp_path / "absent.csv") == 0
    report = parse((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert not report.unusable
    runs = pd.read_parquet(root / "synthetic" / "runs.parquet")
    families = sorted(runs.loc[runs["check"] == "rate", "family"].unique())
    assert len(families) >= 3  # Q1, L2, H1: one rate and one iterations figure each
    expected = {f"fig-{kind}-{family}" for kind in ("rate", "iterations") for family in families}
    assert expected | {"fig-floor", "fig-bias", "fig-flat"} <= {f.id for f in report.figures}
    predictions = pd.read_parquet(root / "synthetic" / "predictions.parquet")
    synthetic = next(r for r in report.table("Verdicts per track").records() if r["track"] == "synthetic")
    assert synthetic["rows"] == str(len(predictions))
    for verdict, n in predictions["verdict"].value_counts().items():
        assert synthetic[verdict] == str(n)


def test_training_runs_say_whether_they_finished() -> None:
    """A run stopped before its planned iterations is 'unfinished', never 'ok'; a divergence
    anywhere in the run wins; a table without the planned count keeps its own status."""

    def rows(run: str, iterations: list[int], planned: float, statuses: list[str]) -> list[dict]:
        return [
            {
                "run": run,
                "preset": "ci",
                "device": "cpu",
                "method": "maml",
                "split": "train",
                "seed": 0,
                "alpha_low": 0.0,
                "alpha_up": 0.0,
                "iteration": i,
                "elapsed_s": float(i),
                "accuracy": 0.5,
                "planned_iterations": planned,
                "status": s,
            }
            for i, s in zip(iterations, statuses, strict=True)
        ]

    metrics = pd.DataFrame(
        rows("done", [50, 100], 100, ["ok", "ok"])
        + rows("cut", [50], 100, ["ok"])
        + rows("nan", [10, 20], 100, ["ok", "diverged"])
        + rows("old", [40], np.nan, ["ok"])
    )
    table = training_cost_table(metrics)
    status = {row[0].text: row[-1].text for row in table.rows}
    assert status == {
        "done": "done",
        "cut": "unfinished (50 / 100 iterations)",
        "nan": "diverged",
        "old": "ok",
    }
    oldest = metrics[metrics["run"] == "old"].drop(columns=["status", "planned_iterations"])
    (row,) = training_cost_table(oldest).rows  # a table from before either column: no crash
    assert row[0].text == "old"
    assert row[-1].text == training_cost_table(oldest.assign(status=np.nan)).rows[0][-1].text


# ----- the paired study: candidate variants and the cost-vs-gain figure --------------------------


def _study_tables(variants: bool) -> dict[str, pd.DataFrame]:
    """paired and curves tables as `sharpmaml study` writes them: FO-MAML, Sharp-MAML_up and, with
    ``variants``, its candidate 'up_k5' paired with MAML and with Sharp-MAML_up."""
    base = {"preset": "ci", "alpha_low": 0.0, "eval_inner_loop": "plain", "iterations": 300, "n_pairs": 4}
    rows = [
        {**base, "method": "fomaml", "alpha_up": 0.0, "accuracy": 80.0, "diff": -3.0, "diff_ci95": 1.0},
        {**base, "method": "sharp_up", "alpha_up": 0.05, "accuracy": 84.0, "diff": 1.0, "diff_ci95": 0.5},
    ]
    rows[0] |= {"verdict": "WORSE", "time_ratio": 0.9}
    rows[1] |= {"verdict": "BETTER", "time_ratio": 2.0}
    if variants:
        rows[0] |= {"variant": ""}
        rows[1] |= {"variant": ""}
        rows.append(
            {
                **base,
                "method": "sharp_up",
                "variant": "up_k5",
                "alpha_up": 0.05,
                "accuracy": 83.8,
                "diff": 0.8,
                "diff_ci95": 0.6,
                "verdict": "NOT DETECTED",
                "time_ratio": 1.3,
                "parent_diff": -0.2,
                "parent_diff_ci95": 0.3,
                "parent_verdict": "NOT DETECTED",
                "parent_time_ratio": 0.65,
            }
        )
    paired = pd.DataFrame(rows).assign(maml_accuracy=83.0, mdd=1.2, grad_ratio=2.0)
    curves = paired[[c for c in ("preset", "method", "variant", "alpha_low", "alpha_up") if c in paired]]
    curves = curves.assign(split="val", eval_inner_loop="", iteration=300, mean=paired["accuracy"], ci95=1.0)
    return {"paired": paired, "curves": curves.assign(n_seeds=4, seed_std=1.0, grad_evals=2400)}


def _study_report(tmp_path: Path, variants: bool) -> ReportParser:
    root = tmp_path / "results"
    for name, frame in _study_tables(variants).items():
        path = root / "realdata" / "study" / f"{name}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path)
    assert build(root, tmp_path / "r.html", tmp_path / "no-baselines.csv") == 0
    return parse((tmp_path / "r.html").read_text(encoding="utf-8"))


def test_study_cost_figure_puts_each_setting_at_its_cost_and_paired_gain(tmp_path) -> None:
    report = _study_report(tmp_path, variants=True)
    figure = report.figure("fig-study-cost")
    assert figure.alt.startswith("Chart (gain over MAML vs cost")
    assert "x: training time per meta-iteration (x MAML" in figure.alt
    assert "y: test accuracy - MAML (points)" in figure.alt
    for series in (
        "MAML (reference)",
        "FO-MAML",
        "Sharp-MAML_up (alpha 0.05)",
        "Sharp-MAML_up + up_k5 (alpha 0.05)",
    ):
        assert series in figure.alt
    assert "Sharp-MAML_up + up_k5 (alpha 0.05) +0.80 ± 0.60 at x1.30 (NOT DETECTED)" in figure.caption
    assert "FO-MAML -3.00 ± 1.00 at x0.90 (WORSE)" in figure.caption
    behind = next(t for t in report.tables if t.headers[:2] == ["setting", "time x MAML"])
    assert behind.records() == [
        {
            "setting": "FO-MAML",
            "time x MAML": "0.9",
            "difference to MAML, 95% CI": "-3.00 ± 1.00",
            "verdict": "WORSE",
        },
        {
            "setting": "Sharp-MAML_up (alpha 0.05)",
            "time x MAML": "2",
            "difference to MAML, 95% CI": "+1.00 ± 0.50",
            "verdict": "BETTER",
        },
        {
            "setting": "Sharp-MAML_up + up_k5 (alpha 0.05)",
            "time x MAML": "1.3",
            "difference to MAML, 95% CI": "+0.80 ± 0.60",
            "verdict": "NOT DETECTED",
        },
    ]
    paired = report.table("Paired difference to MAML (inner loop 'plain')").records()
    assert [r["verdict vs its method"] for r in paired] == ["", "", "NOT DETECTED"]
    assert (
        paired[2]["difference to its method, 95% CI"] == "-0.20 ± 0.30"
        and paired[2]["time x its method"] == "0.65"
    )


def test_a_variant_keeps_its_methods_colour_with_another_marker() -> None:
    from reports.study import _line

    for method in ("sharp_low", "sharp_up", "sharp_both"):
        plain = _line(method, 0.05, 0.05)
        looks = [_line(method, 0.05, 0.05, v, ("a", "b")) for v in ("a", "b")]
        assert all(look["color"] == plain["color"] for look in looks)
        assert len({plain["marker"], *(look["marker"] for look in looks)}) == 3


def test_a_paired_table_lacking_a_column_the_section_reads_is_named_not_a_crash(tmp_path) -> None:
    root = tmp_path / "results"
    path = root / "realdata" / "study" / "paired.parquet"
    path.parent.mkdir(parents=True)
    _study_tables(variants=True)["paired"].drop(columns=["mdd"]).to_parquet(path)
    assert build(root, tmp_path / "r.html", tmp_path / "no-baselines.csv") == 4
    report = parse((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert any(
        line.startswith("realdata/study/paired.parquet: lacks the columns mdd") for line in report.banner
    )


def test_study_tables_from_before_variants_still_give_the_cost_figure(tmp_path) -> None:
    report = _study_report(tmp_path, variants=False)
    assert not report.unusable
    assert (
        "Sharp-MAML_up (alpha 0.05) +1.00 ± 0.50 at x2.00 (BETTER)" in report.figure("fig-study-cost").caption
    )
    assert "verdict vs its method" not in report.table("Paired difference to MAML").headers


def test_summary_outcome_names_a_studys_variants() -> None:
    from reports.outcome import outcome_lines

    paired = _study_tables(variants=True)["paired"]
    line = outcome_lines(pd.DataFrame(), {"cpu": paired})[0]
    assert line.startswith(
        "Real data, paired study (cpu; preset ci; 4 training seeds per setting; 300 iterations"
    )
    assert line.count("Sharp-MAML_up + up_k5 (alpha 0.05) +0.80 ± 0.60") == 1
    assert line.count("Sharp-MAML_up (alpha 0.05) +1.00 ± 0.50") == 1
