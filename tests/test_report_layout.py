"""The report's layout for reading: what the rows of a claim share is said once, the numbers behind
each figure are one click away rather than in the way, the stored baselines are one line per row
under a heading per setting, settings come in one order everywhere, and the meaning of the setting
tables' columns is said once."""

from __future__ import annotations

import dataclasses
import re
from html import unescape

import pytest

from infra.verdicts import DERIVED, PAPER_SHAPE
from reports.accuracy import SETTING_TABLES_NOTE, stored_table
from reports.build import accuracy_entries, build_report
from tests import report_fixtures as fx
from tests.test_report import parse


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("layout") / "results"
    baselines = fx.write_store(root)
    return build_report(root, baselines).html


def test_a_claims_rows_sit_under_one_heading_that_states_what_they_share(html) -> None:
    rate = parse(html).table("Predictions 'rate'")
    assert (
        "prediction" not in rate.headers and "tolerance" not in rate.headers and "source" not in rate.headers
    )
    assert rate.groups == [
        f"rate.bound: G_avg <= R1. Source: {DERIVED}. Rule: mean - 3 SE <= R1",
        "rate.bound: not applicable to these rows (the details say why)",
        f"rate.slope: slope <= -0.4. Source: {PAPER_SHAPE}. Rule: slope <= -0.4",
    ]
    assert rate.column("id") == ["rate.bound/maml/B8", "rate.bound/sharp_low:sqrt/B8", "rate.slope/maml/B8"]
    assert html.count(f'class="group" colspan="{len(rate.headers)}"') >= 3  # one cell over every column


def test_the_numbers_behind_each_figure_are_collapsed_under_a_line_that_counts_them(html) -> None:
    figures = re.findall(r'<figure id="[^"]+">.*?</figure>', html, re.S)
    assert figures
    for n, figure in enumerate(figures, start=1):
        found = re.search(
            rf'<details class="numbers">\s*<summary class="numbers-title">Numbers behind figure {n} \((\d+) rows\)'
            r"</summary>(.*?)</details>",
            figure,
            re.S,
        )
        assert found, figure[:300]
        assert found.group(2).count("<tr>") - 1 == int(found.group(1))  # the header row, then each row


def test_stored_baselines_are_one_line_per_row_under_a_heading_per_setting_in_numeric_order() -> None:
    twenty = dataclasses.replace(fx.BASELINES[0], row_id="paper:finn-20w", ways=20, accuracy=95.8, ci95=0.3)
    table = stored_table([twenty, *fx.BASELINES])
    headings = [row[0].text for row in table.rows if row[0].cls == "group"]
    assert headings == [
        "omniglot 5-way 1-shot",
        "omniglot 20-way 1-shot",
    ]  # not the names' alphabetical order
    assert "setting" not in table.columns
    body = [row for row in table.rows if row[0].cls != "group"]
    assert len(body) == len(fx.BASELINES) + 1
    assert all(len(row) == len(table.columns) for row in body)
    ci_row = next(row for row in body if row[1].text == "ci")
    assert (
        ci_row[2].text == "—" and ci_row[3].text == "91.50 ± 0.70" and ci_row[6].text == "reproduced here [4]"
    )


def test_the_accuracy_figure_orders_settings_as_the_tables_do() -> None:
    twenty = dataclasses.replace(fx.BASELINES[0], row_id="paper:finn-20w", ways=20)
    entries = accuracy_entries(fx.evaluations().iloc[0:0], [twenty, *fx.BASELINES])
    assert list(dict.fromkeys(entries["setting"])) == ["omniglot 5-way 1-shot", "omniglot 20-way 1-shot"]


def test_stored_rows_of_one_method_at_two_radii_get_two_lines_of_the_accuracy_figure() -> None:
    row = next(b for b in fx.BASELINES if not b.is_paper)
    rows = [dataclasses.replace(row, method="sharp_both", alpha_low=a, alpha_up=a) for a in (0.05, 0.01)]
    entries = accuracy_entries(fx.evaluations().iloc[0:0], rows)
    assert sorted(entries["label"]) == [
        f"Sharp-MAML_both [alpha_low = 0.01, alpha_up = 0.01] stored baseline ({row.scale})",
        f"Sharp-MAML_both [alpha_low = 0.05, alpha_up = 0.05] stored baseline ({row.scale})",
    ]


def test_every_accuracy_panel_shows_its_accuracy_ticks(monkeypatch) -> None:
    """The panels share one x-range; each keeps its tick labels (a tall figure read from the top)."""
    from reports import figures

    drawn = []
    monkeypatch.setattr(figures, "finish", lambda fig, *args, **kwargs: drawn.append(fig))
    twenty = dataclasses.replace(fx.BASELINES[0], row_id="paper:finn-20w", ways=20)
    figures.accuracy_figure(accuracy_entries(fx.evaluations().iloc[0:0], [twenty, *fx.BASELINES]))
    (fig,) = drawn
    fig.canvas.draw()
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 2
    for ax in panels:
        assert [t.get_text() for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]


def test_the_setting_tables_columns_are_explained_once_above_them(html) -> None:
    page = unescape(html)
    assert page.count(SETTING_TABLES_NOTE) == 1 and page.count("Δ vs MAML compares rows") == 1
    first = next(t for t in parse(html).tables if t.caption.endswith("the paper next to the measurement"))
    assert page.index(SETTING_TABLES_NOTE) < page.index(first.caption)
