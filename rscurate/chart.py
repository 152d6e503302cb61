"""Axes, ticks, legends and palettes for the dataset card's charts, drawn with PIL.

The card needs a bar chart and footprint maps, nothing more; matplotlib's import alone (~0.5 s) cost more than
the whole work of a small build, so this draws just what those two figures need.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

RGB = tuple[int, int, int]
INK: RGB = (0, 0, 0)
GRID: RGB = (222, 222, 222)
WHITE: RGB = (255, 255, 255)
TICK = 4  # px, tick marks outside the frame

# matplotlib's tab10 and tab20 (qualitative) and ColorBrewer's OrRd (sequential), so the figures keep their colours.
_TAB10 = "1f77b4 ff7f0e 2ca02c d62728 9467bd 8c564b e377c2 7f7f7f bcbd22 17becf"
_TAB20 = ("1f77b4 aec7e8 ff7f0e ffbb78 2ca02c 98df8a d62728 ff9896 9467bd c5b0d5 8c564b c49c94 e377c2 f7b6d2 "
          "7f7f7f c7c7c7 bcbd22 dbdb8d 17becf 9edae5")
_ORRD = "fff7ec fee8c8 fdd49e fdbb84 fc8d59 ef6548 d7301f b30000 7f0000"


def hex_colour(text: str) -> RGB:
    value = int(text.lstrip("#"), 16)
    return (value >> 16, (value >> 8) & 255, value & 255)


def qualitative(n: int) -> list[RGB]:
    """n distinct colours (tab10 up to ten, else tab20, repeating past twenty)."""
    palette = [hex_colour(c) for c in (_TAB10 if n <= 10 else _TAB20).split()]
    return [palette[i % len(palette)] for i in range(n)]


def reds(n: int) -> list[RGB]:
    """n shades from light orange to dark red (OrRd between 0.35 and 0.9, as the card's bars always had)."""
    anchors = np.array([hex_colour(c) for c in _ORRD.split()], dtype=float)
    at = np.linspace(0.35, 0.9, n) * (len(anchors) - 1)
    channels = [np.interp(at, np.arange(len(anchors)), anchors[:, k]) for k in range(3)]
    return [(round(r), round(g), round(b)) for r, g, b in zip(*channels, strict=True)]


@functools.cache
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def text_width(text: str, size: int) -> int:
    return math.ceil(font(size).getlength(text))


def nice_ticks(lo: float, hi: float, bins: int, integer: bool = False) -> np.ndarray:
    """Round tick values within [lo, hi], at most bins + 1: steps of 1, 2, 2.5 or 5 times a power of ten (no
    2.5 for integer ticks), as matplotlib's MaxNLocator chooses them."""
    if not hi > lo:
        return np.array([lo])
    raw = (hi - lo) / max(bins, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(s * power for s in ((1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10)) if s * power >= raw * 0.999999)
    if integer:
        step = max(1.0, float(round(step)))
    return np.arange(math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9) + 1) * step


def tick_labels(ticks: np.ndarray, wrap_longitude: bool = False) -> list[str]:
    """Plain decimals, as many as the step needs (no offset or exponent: degrees read as they are). With
    wrap_longitude, values unwrapped past the antimeridian are labelled in [-180, 180)."""
    step = float(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:  # 2.5, 0.25, ...
        decimals += 1
    values = (ticks + 180.0) % 360.0 - 180.0 if wrap_longitude else ticks
    return [f"{round(float(v), decimals) + 0.0:.{decimals}f}" for v in values]


@dataclass
class Axes:
    """A plot area on an image: data to pixels, and the frame, grid, ticks and axis labels around it."""

    image: Image.Image
    box: tuple[int, int, int, int]  # left, top, right, bottom in px
    xlim: tuple[float, float]
    ylim: tuple[float, float]

    @property
    def draw(self) -> ImageDraw.ImageDraw:
        return ImageDraw.Draw(self.image)

    def px(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        left, top, right, bottom = self.box
        (x0, x1), (y0, y1) = self.xlim, self.ylim
        return (left + (np.asarray(x, float) - x0) * (right - left) / (x1 - x0),
                bottom - (np.asarray(y, float) - y0) * (bottom - top) / (y1 - y0))

    def grid(self, xticks: np.ndarray, yticks: np.ndarray) -> None:
        left, top, right, bottom = self.box
        xs, ys = self.px(xticks, yticks)
        for x in xs:
            self.draw.line([(round(x), top), (round(x), bottom)], fill=GRID)
        for y in ys:
            self.draw.line([(left, round(y)), (right, round(y))], fill=GRID)

    def polygons(self, quads: np.ndarray, colour: RGB, alpha: float) -> None:
        """(n, k, 2) polygons in data units, filled at opacity alpha (over whatever lies below, as where
        sources overlap) and outlined in full colour."""
        xs, ys = self.px(quads[..., 0], quads[..., 1])
        outlines = [list(zip(x.tolist(), y.tolist(), strict=True)) for x, y in zip(xs, ys, strict=True)]
        mask = Image.new("L", self.image.size, 0)
        fill = ImageDraw.Draw(mask)
        for points in outlines:
            fill.polygon(points, fill=round(255 * alpha))
        self.image.paste(colour, mask=mask)
        draw = self.draw
        for points in outlines:
            draw.polygon(points, outline=colour)

    def dots(self, x: np.ndarray, y: np.ndarray, colour: RGB, radius: float = 2.0) -> None:
        draw = self.draw
        for cx, cy in zip(*self.px(x, y), strict=True):
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)

    def rectangle(self, x0: float, y0: float, x1: float, y1: float, colour: RGB) -> None:
        (px0, px1), (py0, py1) = self.px(np.array([x0, x1]), np.array([y0, y1]))
        self.draw.rectangle((round(px0), round(py1), round(px1) - 1, round(py0)), fill=colour)

    def frame(self) -> None:
        self.draw.rectangle(self.box, outline=INK)

    def xticks(self, ticks: np.ndarray, labels: Sequence[str], size: int) -> None:
        bottom = self.box[3]
        for x, label in zip(self.px(ticks, ticks)[0], labels, strict=True):
            self.draw.line([(round(x), bottom), (round(x), bottom + TICK)], fill=INK)
            self.draw.text((round(x), bottom + TICK + 2), label, fill=INK, font=font(size), anchor="mt")

    def yticks(self, ticks: np.ndarray, labels: Sequence[str], size: int) -> None:
        left = self.box[0]
        for y, label in zip(self.px(ticks, ticks)[1], labels, strict=True):
            self.draw.line([(left - TICK, round(y)), (left, round(y))], fill=INK)
            self.draw.text((left - TICK - 3, round(y)), label, fill=INK, font=font(size), anchor="rm")

    def xlabel(self, text: str, size: int, below: int) -> None:
        """below: px from the frame's bottom edge to the label's top (past the tick labels)."""
        left, _, right, bottom = self.box
        self.draw.text(((left + right) // 2, bottom + below), text, fill=INK, font=font(size), anchor="mt")

    def ylabel(self, text: str, size: int, x: int) -> None:
        """Rotated a quarter turn, centred on the frame's height, its left edge at x."""
        layer = Image.new("L", (text_width(text, size) + 2, size + 6), 0)
        ImageDraw.Draw(layer).text((1, 2), text, fill=255, font=font(size))
        layer = layer.rotate(90, expand=True)
        _, top, _, bottom = self.box
        self.image.paste(INK, (x, (top + bottom - layer.height) // 2), layer)


def legend(image: Image.Image, items: Sequence[tuple[str, RGB]], top: int, size: int, ncol: int) -> int:
    """Colour swatches with labels, in rows of up to ncol centred across the image (fewer columns when they
    would not fit); returns the height used."""
    draw = ImageDraw.Draw(image)
    swatch, gap, row = 2 * size, 6, size + 8
    column = max(swatch + gap + text_width(label, size) for label, _ in items) + 3 * size
    ncol = max(1, min(ncol, len(items), (image.width - 20) // column))
    for i, (label, colour) in enumerate(items):
        r, c = divmod(i, ncol)
        in_row = min(ncol, len(items) - r * ncol)
        x = (image.width - in_row * column) // 2 + c * column + size
        y = top + r * row
        draw.rectangle((x, y + 2, x + swatch, y + size - 2), fill=colour)
        draw.text((x + swatch + gap, y + size // 2), label, fill=INK, font=font(size), anchor="lm")
    return math.ceil(len(items) / ncol) * row


def centred_text(image: Image.Image, lines: Sequence[str], top: int, size: int, centre: int | None = None) -> int:
    """Lines centred on x = centre (the image's middle by default); returns the height used."""
    draw = ImageDraw.Draw(image)
    x = image.width // 2 if centre is None else centre
    for i, line in enumerate(lines):
        draw.text((x, top + i * (size + 4)), line, fill=INK, font=font(size), anchor="mt")
    return len(lines) * (size + 4)


def save(image: Image.Image, path: Path) -> None:
    image.save(path, format="PNG", compress_level=3)
