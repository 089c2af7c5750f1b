"""How the report names and draws each method: one table keyed by ``harness.config.METHODS``.

Tables use the label, figures the colour, marker and line style, legends and rows the order.
Colours come from the colour-blind palette of Okabe and Ito as seaborn ships it ("colorblind"),
darkened where needed so that every series has at least 3:1 contrast against the white figure
background (WCAG's minimum for graphical objects); marker and line style repeat the identity,
so no method is told apart by colour alone.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Any

from harness.config import METHODS

BACKGROUND = "#ffffff"
MIN_CONTRAST = 3.0
# seaborn.color_palette("colorblind", 10), written out so that the report needs no seaborn.
COLOUR_BLIND = (
    "#0173b2",
    "#de8f05",
    "#029e73",
    "#d55e00",
    "#cc78bc",
    "#ca9161",
    "#fbafe4",
    "#949494",
    "#ece133",
    "#56b4e9",
)


def _rgb(hex_colour: str) -> tuple[float, float, float]:
    return tuple(int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5))  # type: ignore[return-value]


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgb)


def luminance(hex_colour: str) -> float:
    """WCAG 2 relative luminance of an sRGB colour."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in _rgb(hex_colour)]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(colour: str, background: str = BACKGROUND) -> float:
    """WCAG 2 contrast ratio of two colours (1 to 21)."""
    a, b = sorted((luminance(colour), luminance(background)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def readable(hex_colour: str, minimum: float = MIN_CONTRAST) -> str:
    """The colour with its hue and saturation kept, darkened just enough for ``minimum`` contrast
    against the background (unchanged when it already has it)."""
    hue, lightness, saturation = colorsys.rgb_to_hls(*_rgb(hex_colour))
    colour = hex_colour
    while contrast(colour) < minimum:
        lightness -= 0.005
        colour = _hex(colorsys.hls_to_rgb(hue, lightness, saturation))
    return colour


PALETTE = tuple(readable(c) for c in COLOUR_BLIND)


@dataclass(frozen=True)
class MethodLook:
    """A method's name in tables and its look in figures."""

    label: str
    colour: str
    marker: str
    line: Any  # a matplotlib line style


# In harness.config.METHODS order; the test suite checks that every method has one.
METHOD_LOOKS: dict[str, MethodLook] = {
    "maml": MethodLook("MAML", PALETTE[0], "o", "-"),
    "fomaml": MethodLook("FO-MAML", PALETTE[7], "s", (0, (1, 1.5))),
    "sharp_low": MethodLook("Sharp-MAML_low", PALETTE[2], "^", "--"),
    "sharp_up": MethodLook("Sharp-MAML_up", PALETTE[1], "v", "-."),
    "sharp_both": MethodLook("Sharp-MAML_both", PALETTE[3], "D", (0, (5, 1, 1, 1))),
}
# Series that are not methods (radii, step sizes, ...): the other colours first.
SERIES_LOOKS = (
    (PALETTE[0], "o", "-"),
    (PALETTE[1], "v", "--"),
    (PALETTE[2], "^", "-."),
    (PALETTE[3], "D", ":"),
    (PALETTE[4], "P", "-"),
    (PALETTE[5], "X", "--"),
    (PALETTE[6], "*", "-."),
    (PALETTE[8], "h", ":"),
    (PALETTE[9], "<", "-"),
    (PALETTE[7], ">", "--"),
)


def method_label(method: Any) -> str:
    """The paper's name of a method ("sharp_up" -> "Sharp-MAML_up"); unknown names unchanged."""
    look = METHOD_LOOKS.get(str(method))
    return look.label if look else str(method)


def method_rank(method: Any) -> int:
    """A method's place in every table and legend: the order of harness.config.METHODS,
    unknown names last."""
    order = list(METHODS)
    return order.index(method) if method in order else len(order)


def is_method(name: Any) -> bool:
    """Whether ``name`` is one of this project's methods (not another paper's)."""
    return str(name) in METHOD_LOOKS


def line_style(key: Any, index: int = 0) -> dict[str, Any]:
    """matplotlib keywords (colour, marker, line style) of a method, or of the index-th other series."""
    look = METHOD_LOOKS.get(str(key))
    if look is not None:
        return {"color": look.colour, "marker": look.marker, "linestyle": look.line}
    colour, marker, line = SERIES_LOOKS[index % len(SERIES_LOOKS)]
    return {"color": colour, "marker": marker, "linestyle": line}
