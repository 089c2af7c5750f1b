"""The report in headless Chromium: it renders (a screenshot with text, tables and the figures'
colours, not a blank page) and logs nothing to the console (no script errors, no blocked loads).

What is verified: Chromium's console log (``--enable-logging=stderr``, lines tagged CONSOLE)
holds no message for the report, while the same check catches a planted console.error and a
network load blocked by the report's Content-Security-Policy; the screenshot has the MAML
blue of the figures and the PASS cell colour, so the embedded SVGs and the CSS were drawn.
Needs Debian's ``chromium`` package (.ci/run installs it); skipped when it is absent.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from infra.cli import main
from reports.methods import METHOD_LOOKS
from tests import cdp
from tests import report_fixtures as fx

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
HEIGHT = 9000
PASS_CELL = (0xD4, 0xE6, 0xF4)  # --pass in report.css


def screenshot(page: Path, png: Path, profile: Path, height: int = HEIGHT) -> list[str]:
    """Render ``page`` to ``png``; returns the console lines Chromium logged."""
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={png}",
            f"--window-size=1280,{height}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert png.is_file()
    return [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))


def has_colour(pixels: np.ndarray, colour: tuple[int, int, int], at_least: int = 50) -> bool:
    return int(np.all(np.abs(pixels.astype(int) - colour) <= 2, axis=-1).sum()) >= at_least


def test_report_renders_with_no_console_messages(tmp_path) -> None:
    root = tmp_path / "results"
    baselines = fx.write_store(root)
    out = tmp_path / "report.html"
    assert main(["report", "--results", str(root), "--baselines", str(baselines), "--out", str(out)]) == 0
    console = screenshot(out, tmp_path / "shot.png", tmp_path / "profile")
    assert console == []
    pixels = np.asarray(Image.open(tmp_path / "shot.png").convert("RGB"))
    assert pixels.shape[:2] == (HEIGHT, 1280)
    ink = np.any(pixels < 200, axis=-1)
    assert 0.02 < ink.mean() < 0.6  # text and lines, not a blank or a solid page
    assert ink[:300].any()  # the title at the top
    assert has_colour(pixels, PASS_CELL)  # the stylesheet
    assert has_colour(pixels, rgb(METHOD_LOOKS["maml"].colour))  # MAML's blue: the embedded SVG figures


def test_console_check_catches_errors_and_blocked_loads(tmp_path) -> None:
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="default-src '
        "'none'; img-src data:; script-src 'unsafe-inline'\"></head><body><h1>x</h1>"
        '<img src="https://example.invalid/a.png" alt=""><script>console.error(\'planted\');</script>'
        "</body></html>",
        encoding="utf-8",
    )
    console = " ".join(screenshot(page, tmp_path / "broken.png", tmp_path / "profile", height=600))
    assert "planted" in console and "Content Security Policy" in console


# Boxes wider than their own width: the content of such a box is cut in print and scrolls on screen.
OVERFLOWING = """[...document.querySelectorAll('.table-wrap, pre, figure')]
  .filter(e => e.scrollWidth > e.clientWidth + 1)
  .map(e => (e.querySelector('caption') || e).textContent.trim().slice(0, 60))"""
A4_CONTENT_PX = 688  # 210 mm - 2 x 14 mm margins (report.css @page) at 96 px per inch


def test_nothing_is_cut_in_print_and_the_stored_baselines_fit_the_screen(tmp_path) -> None:
    root = tmp_path / "results"
    baselines = fx.write_store(root)
    out = tmp_path / "report.html"
    assert main(["report", "--results", str(root), "--baselines", str(baselines), "--out", str(out)]) == 0
    page = cdp.Page(CHROMIUM, tmp_path / "profile", out.resolve().as_uri(), 1280, 800)
    try:
        assert page.evaluate(OVERFLOWING) == []  # desktop: no table scrolls sideways
        stored = page.evaluate(
            """(() => { const t = [...document.querySelectorAll('table')].find(
                 t => t.caption && t.caption.textContent.startsWith('Stored baselines'));
               const rows = [...t.querySelectorAll('tbody tr')].filter(r => !r.querySelector('td.group'));
               return rows.map(r => r.getBoundingClientRect().height); })()"""
        )
        assert stored and max(stored) < 30  # one line per stored row (13.6 px text), none wrapped
        page.send(
            "Emulation.setDeviceMetricsOverride",
            width=A4_CONTENT_PX,
            height=1040,
            deviceScaleFactor=1,
            mobile=False,
        )
        page.media("print")
        assert page.evaluate(OVERFLOWING) == []  # print: every table, code block and figure fits the page
        assert page.evaluate("document.documentElement.scrollWidth") <= A4_CONTENT_PX
        # paper is narrower than a tablet but keeps real tables: the phone's cards are for screens only
        assert (
            page.evaluate("getComputedStyle(document.querySelector('table.stack tr')).display") == "table-row"
        )
        page.media("screen")
        page.send(
            "Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=1, mobile=True
        )
        stacked = page.evaluate(
            """[...document.querySelectorAll('table.stack')].map(t => [t.caption.textContent.slice(0, 40),
                 t.closest('.table-wrap').scrollWidth - t.closest('.table-wrap').clientWidth])"""
        )
        # a phone: the findings, setting, gate and cost tables become cards that fit the screen
        assert {c.split(":")[0].split(" (")[0] for c, _ in stacked} >= {"Findings", "Regression gate"}
        assert [c for c, excess in stacked if excess > 1] == []
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # the page never scrolls sideways
    finally:
        page.close()
