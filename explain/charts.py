"""Charts drawn straight onto pixels with PIL: a map with a labelled colour bar, a horizontal bar
chart, a 2-D path plot, a row of captioned pictures, a colour legend, pictures side by side.

A matplotlib figure costs ~150 ms on a 2-core CPU (layout, tight bounding box, a PNG round
trip); these take a few milliseconds, which keeps an analysis with a dozen pictures interactive.
Colours come from viridis/cividis (:func:`explain.render.colorize`); text is DejaVu Sans, the
font matplotlib ships, so the app needs no font of its own.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .render import colorize, resize_map

RGB = tuple[int, int, int]
INK: RGB = (25, 25, 25)
MUTED: RGB = (120, 120, 120)
PAPER: RGB = (255, 255, 255)
PLOT_BACKGROUND: RGB = (242, 242, 242)
MARGIN = 8
TITLE_SIZE = 13
TEXT_SIZE = 11
#: Room above and below a colour bar's ramp for its end labels.
BAR_PAD = 8


@cache
def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """DejaVu Sans at ``size`` px (PIL's own scalable default if matplotlib's copy is missing)."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(str(path), size)
    except OSError:
        return ImageFont.load_default(size)


def wrap(text: str, width: float, size: int = TEXT_SIZE) -> list[str]:
    """Greedy word wrap to ``width`` pixels; explicit newlines are kept (a word longer than the
    width gets a line of its own)."""
    f = font(size)
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            trial = f"{line} {word}" if line else word
            if line and f.getlength(trial) > width:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    return lines


def line_height(size: int) -> int:
    return int(round(size * 1.3))


def text_width(lines: Sequence[str], size: int) -> int:
    f = font(size)
    return int(np.ceil(max((f.getlength(s) for s in lines), default=0)))


def draw_lines(draw: ImageDraw.ImageDraw, x: float, y: float, lines: Sequence[str], size: int = TEXT_SIZE,
               fill: RGB = INK, align: str = "left") -> int:
    """Draw ``lines`` from top ``y``; ``align`` left/centre/right about ``x``. Returns the height used."""
    f = font(size)
    anchor = {"left": "la", "center": "ma", "right": "ra"}[align]
    for i, s in enumerate(lines):
        draw.text((x, y + i * line_height(size)), s, font=f, fill=fill, anchor=anchor)
    return len(lines) * line_height(size)


def vertical_text(text: str, size: int = TEXT_SIZE, fill: RGB = INK) -> Image.Image:
    """``text`` on a white strip, rotated to read bottom-to-top (an axis label)."""
    f = font(size)
    strip = Image.new("RGB", (int(np.ceil(f.getlength(text))) + 2, line_height(size)), PAPER)
    ImageDraw.Draw(strip).text((1, 0), text, font=f, fill=fill)
    return strip.rotate(90, expand=True)


def dashed_line(draw: ImageDraw.ImageDraw, start: Sequence[float], end: Sequence[float], fill: RGB = MUTED,
                width: int = 1, dash: float = 5.0, gap: float = 4.0) -> None:
    (x0, y0), (x1, y1) = start, end
    length = float(np.hypot(x1 - x0, y1 - y0))
    if length == 0:
        return
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    t = 0.0
    while t < length:
        u = min(t + dash, length)
        draw.line([(x0 + ux * t, y0 + uy * t), (x0 + ux * u, y0 + uy * u)], fill=fill, width=width)
        t = u + gap


def side_by_side(pictures: Sequence[np.ndarray], gap: int = 4, background: RGB = PAPER,
                 vertical: bool = False) -> np.ndarray:
    """RGB pictures in one row (or one column), each centred across it."""
    if vertical:
        turned = [np.ascontiguousarray(p[..., :3].transpose(1, 0, 2)) for p in pictures]
        return np.ascontiguousarray(side_by_side(turned, gap, background).transpose(1, 0, 2))
    height = max(p.shape[0] for p in pictures)
    width = sum(p.shape[1] for p in pictures) + gap * (len(pictures) - 1)
    out = np.empty((height, width, 3), np.uint8)
    out[:] = background
    x = 0
    for p in pictures:
        top = (height - p.shape[0]) // 2
        out[top:top + p.shape[0], x:x + p.shape[1]] = p[..., :3]
        x += p.shape[1] + gap
    return out


def shades(positions: Sequence[float], cmap: str = "viridis") -> list[RGB]:
    """Colours at ``positions`` in [0, 1] along ``cmap``."""
    return [tuple(int(v) for v in rgb) for rgb in colorize(np.asarray([positions], np.float32), cmap)[0]]


def hex_shades(positions: Sequence[float], cmap: str = "viridis") -> list[str]:
    """:func:`shades` as ``#rrggbb`` strings, for charts the browser draws."""
    return ["#{:02x}{:02x}{:02x}".format(*rgb) for rgb in shades(positions, cmap)]


def _title_block(title: str, width: int) -> list[str]:
    return wrap(title, width - 2 * MARGIN, TITLE_SIZE) if title else []


def _format(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def vertical_colour_bar(height: int, label: str, ticks: Sequence[tuple[float, str]], cmap: str = "viridis") -> Image.Image:
    """A vertical colour ramp ``height`` px tall (high end on top), tick labels at fractions of
    it (``(0.0, "0")`` is the bottom) and ``label`` read bottom-to-top beside them. The picture
    has :data:`BAR_PAD` px above and below the ramp, for the end labels."""
    width_ramp = 14
    tick_w = text_width([t for _, t in ticks], TEXT_SIZE)
    label_img = vertical_text(label, TEXT_SIZE)
    canvas = Image.new("RGB", (width_ramp + 5 + tick_w + 6 + label_img.width + 1,
                               max(height, label_img.height) + 2 * BAR_PAD), PAPER)
    draw = ImageDraw.Draw(canvas)
    ramp = np.linspace(1, 0, height, dtype=np.float32)[:, None].repeat(width_ramp, axis=1)
    canvas.paste(Image.fromarray(colorize(ramp, cmap)), (1, BAR_PAD))
    draw.rectangle([0, BAR_PAD - 1, width_ramp + 1, BAR_PAD + height], outline=INK, width=1)
    f = font(TEXT_SIZE)
    for fraction, text in ticks:
        y = BAR_PAD + (height - 1) * (1 - fraction)
        draw.line([(width_ramp + 1, y), (width_ramp + 4, y)], fill=INK)
        draw.text((width_ramp + 6, y), text, font=f, fill=INK, anchor="lm")
    canvas.paste(label_img, (width_ramp + 5 + tick_w + 6, BAR_PAD + max(0, (height - label_img.height) // 2)))
    return canvas


def grid_pixels(scaled: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """A [0, 1] map enlarged so its longer side is ``side`` px, and the size of one cell: grids up
    to 32 cells a side as crisp cells, larger maps resized smoothly."""
    rows, cols = scaled.shape
    cell = side / max(rows, cols)
    map_h, map_w = int(round(rows * cell)), int(round(cols * cell))
    if max(rows, cols) <= 32:
        r_idx = np.minimum((np.arange(map_h) / cell).astype(int), rows - 1)
        c_idx = np.minimum((np.arange(map_w) / cell).astype(int), cols - 1)
        return scaled[r_idx][:, c_idx], cell
    return np.clip(resize_map(scaled, (map_h, map_w)), 0, 1), cell


def map_panel(values: np.ndarray, title: str, label: str, cmap: str = "viridis", vmin: float | None = None,
              vmax: float | None = None, marker: tuple[int, int] | None = None, cell_text: str | None = None,
              side: int = 224) -> np.ndarray:
    """A 2-D map with a labelled colour bar (for maps whose absolute values matter).

    Small grids (up to 32 cells a side) are drawn as crisp cells, larger maps resized smoothly.
    ``marker`` outlines one cell (row, column); ``cell_text`` is a format such as ``"{:.3f}"``
    written in every cell (dark text on light cells, light on dark).
    """
    grid = np.nan_to_num(np.asarray(values, np.float32))
    lo = float(grid.min()) if vmin is None else float(vmin)
    hi = float(grid.max()) if vmax is None else float(vmax)
    scaled = np.clip((grid - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(grid)
    shown, cell = grid_pixels(scaled, side)
    map_h, map_w = shown.shape

    ticks = [(0.0, _format(lo)), (0.5, _format((lo + hi) / 2)), (1.0, _format(hi))]
    bar = vertical_colour_bar(map_h, label, ticks, cmap)
    width = MARGIN + map_w + 12 + bar.width + MARGIN
    title_lines = _title_block(title, width)
    top = MARGIN + len(title_lines) * line_height(TITLE_SIZE) + (4 if title_lines else 0)
    height = top + bar.height - BAR_PAD + MARGIN + 4
    canvas = Image.new("RGB", (width, height), PAPER)
    canvas.paste(bar, (MARGIN + map_w + 12, top - BAR_PAD))  # before the title: its padding is blank
    draw = ImageDraw.Draw(canvas)
    draw_lines(draw, width / 2, MARGIN, title_lines, TITLE_SIZE, align="center")

    canvas.paste(Image.fromarray(colorize(shown, cmap)), (MARGIN, top))
    if cell_text is not None:
        f = font(10)
        for (r, c), v in np.ndenumerate(grid):
            centre = (MARGIN + (c + 0.5) * cell, top + (r + 0.5) * cell)
            ink = INK if scaled[r, c] > 0.6 else PAPER
            draw.text(centre, cell_text.format(float(v)), font=f, fill=ink, anchor="mm")
    if marker is not None:
        r, c = marker
        box = [MARGIN + c * cell, top + r * cell, MARGIN + (c + 1) * cell - 1, top + (r + 1) * cell - 1]
        draw.rectangle([box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1], outline=INK, width=1)
        draw.rectangle(box, outline=PAPER, width=2)
    return np.asarray(canvas)


def marker_polygon(shape: str, centre: Sequence[float], radius: float) -> list[tuple[float, float]]:
    """Corner points of a marker: ``square``, ``diamond``, ``triangle`` or ``star`` (a circle is
    drawn as an ellipse instead)."""
    cx, cy = centre
    if shape == "square":
        r = radius * 0.85
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "diamond":
        return [(cx, cy - radius), (cx + radius, cy), (cx, cy + radius), (cx - radius, cy)]
    if shape == "triangle":
        return [(cx + radius * np.cos(a), cy - radius * np.sin(a)) for a in np.radians([90, 210, 330])]
    if shape == "star":
        angles = np.radians(90 + 36 * np.arange(10))
        radii = np.where(np.arange(10) % 2 == 0, radius, radius * 0.45)
        return [(cx + r * np.cos(a), cy - r * np.sin(a)) for r, a in zip(radii, angles)]
    raise ValueError(f"unknown marker shape {shape!r}")


def draw_marker(draw: ImageDraw.ImageDraw, shape: str, centre: Sequence[float], radius: float, fill: RGB,
                outline: RGB = INK) -> None:
    if shape == "circle":
        cx, cy = centre
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=fill, outline=outline, width=1)
    else:
        draw.polygon(marker_polygon(shape, centre, radius), fill=fill, outline=outline, width=1)


def path_plot(anchors: np.ndarray, anchor_labels: Sequence[str], anchor_shapes: Sequence[str],
              anchor_colours: Sequence[RGB], point: Sequence[float], point_label: str, title: str = "",
              xlabel: str = "", ylabel: str = "", side: int = 220) -> np.ndarray:
    """Anchors joined by a dashed path and one highlighted point (a star), equal axis scales,
    with a legend on the right."""
    anchors = np.asarray(anchors, np.float64)
    point = np.asarray(point, np.float64)
    every = np.vstack([anchors, point[None]])
    lo, hi = every.min(0), every.max(0)
    extent = max(float((hi - lo).max()), 1e-9) * 1.2
    centre = (lo + hi) / 2
    legend = list(zip(anchor_labels, anchor_shapes, anchor_colours)) + [(point_label, "star", PAPER)]
    legend_w = 22 + text_width([s for s, _, _ in legend], TEXT_SIZE)
    ylabel_img = vertical_text(ylabel, TEXT_SIZE) if ylabel else None
    plot_x = MARGIN + (ylabel_img.width + 4 if ylabel_img else 0)
    width = plot_x + side + 12 + legend_w + MARGIN
    title_lines = _title_block(title, width)
    plot_y = MARGIN + len(title_lines) * line_height(TITLE_SIZE) + (6 if title_lines else 0)
    height = plot_y + side + (4 + line_height(TEXT_SIZE) if xlabel else 0) + MARGIN

    def to_pixels(xy: np.ndarray) -> tuple[float, float]:
        u = (xy - centre) / extent + 0.5  # equal scales on both axes
        return plot_x + u[0] * side, plot_y + (1 - u[1]) * side

    canvas = Image.new("RGB", (width, height), PAPER)
    draw = ImageDraw.Draw(canvas)
    draw_lines(draw, width / 2, MARGIN, title_lines, TITLE_SIZE, align="center")
    draw.rectangle([plot_x, plot_y, plot_x + side, plot_y + side], fill=PLOT_BACKGROUND, outline=INK)
    corners = [to_pixels(a) for a in anchors]
    for a, b in itertools.pairwise(corners):
        dashed_line(draw, a, b, fill=MUTED, width=2)
    for xy, shape, colour in zip(corners, anchor_shapes, anchor_colours):
        draw_marker(draw, shape, xy, 7, tuple(colour))
    draw_marker(draw, "star", to_pixels(point), 12, PAPER)
    if xlabel:
        draw.text((plot_x + side / 2, plot_y + side + 4), xlabel, font=font(TEXT_SIZE), fill=INK, anchor="ma")
    if ylabel_img is not None:
        canvas.paste(ylabel_img, (MARGIN, plot_y + max(0, (side - ylabel_img.height) // 2)))
    lx = plot_x + side + 12
    step = line_height(TEXT_SIZE) * 1.4
    legend_top = plot_y + (side - step * len(legend)) / 2  # mid-height: clear of a label laid over the top
    for i, (text, shape, colour) in enumerate(legend):
        y = legend_top + (i + 0.5) * step
        draw_marker(draw, shape, (lx + 7, y), 6 if shape != "star" else 8, tuple(colour))
        draw.text((lx + 20, y), text, font=font(TEXT_SIZE), fill=INK, anchor="lm")
    return np.asarray(canvas)


def outline_mask(picture: np.ndarray, mask: np.ndarray, colour: RGB = PAPER, dash: int = 4) -> np.ndarray:
    """``picture`` with the border of ``mask > 0.5`` drawn over it as a dashed 2-px line."""
    if mask.shape[:2] != picture.shape[:2]:
        mask = resize_map(mask, picture.shape[:2])
    binary = (np.asarray(mask) > 0.5).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    out = np.ascontiguousarray(picture[..., :3]).copy()
    h, w = out.shape[:2]
    for contour in contours:
        pts = contour[:, 0, :]  # (N, 2) as x, y
        pts = pts[(np.arange(len(pts)) // dash) % 2 == 0]
        for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
            out[np.clip(pts[:, 1] + dy, 0, h - 1), np.clip(pts[:, 0] + dx, 0, w - 1)] = colour
    return out


def captioned_row(pictures: Sequence[tuple[np.ndarray, str]], side: int = 150, footer: str = "",
                  colour_bar: str | None = None, cmap: str = "viridis") -> np.ndarray:
    """Square pictures in a row, each under its (wrapped) caption; an optional footer line and
    an optional 0..1 colour bar at the right labelled ``colour_bar``."""
    gap = 10
    captions = [wrap(text, side, TEXT_SIZE) for _, text in pictures]
    caption_h = max((len(c) for c in captions), default=0) * line_height(TEXT_SIZE)
    bar = vertical_colour_bar(side, colour_bar, [(0.0, "0"), (1.0, "1")], cmap) if colour_bar else None
    width = 2 * MARGIN + len(pictures) * side + (len(pictures) - 1) * gap + (12 + bar.width if bar else 0)
    top = MARGIN + caption_h + 4
    footer_h = line_height(TEXT_SIZE) + 4 if footer else 0
    canvas = Image.new("RGB", (width, top + side + footer_h + MARGIN), PAPER)
    draw = ImageDraw.Draw(canvas)
    for i, ((picture, _), lines) in enumerate(zip(pictures, captions)):
        x = MARGIN + i * (side + gap)
        draw_lines(draw, x + side / 2, top - 4 - len(lines) * line_height(TEXT_SIZE), lines, align="center")
        shown = cv2.resize(np.ascontiguousarray(picture[..., :3]), (side, side), interpolation=cv2.INTER_AREA
                           if picture.shape[0] > side else cv2.INTER_LINEAR)
        canvas.paste(Image.fromarray(shown), (x, top))
    if bar is not None:
        canvas.paste(bar, (width - MARGIN - bar.width, top - BAR_PAD))
    if footer:
        draw.text((width / 2, top + side + 4), footer, font=font(TEXT_SIZE), fill=INK, anchor="ma")
    return np.asarray(canvas)


def colour_legend(title: str, low: str = "low", high: str = "high", cmap: str = "viridis",
                  width: int = 700) -> np.ndarray:
    """A horizontal colour ramp with its two ends named and a title above."""
    ramp_h = 22
    title_lines = _title_block(title, width)
    top = MARGIN + len(title_lines) * line_height(TITLE_SIZE) + 4
    canvas = Image.new("RGB", (width, top + ramp_h + 4 + line_height(TEXT_SIZE) + MARGIN), PAPER)
    draw = ImageDraw.Draw(canvas)
    draw_lines(draw, width / 2, MARGIN, title_lines, TITLE_SIZE, align="center")
    x0, x1 = MARGIN, width - MARGIN
    canvas.paste(Image.fromarray(colorize(np.tile(np.linspace(0, 1, x1 - x0, dtype=np.float32), (ramp_h, 1)), cmap)),
                 (x0, top))
    draw.rectangle([x0 - 1, top - 1, x1, top + ramp_h], outline=INK)
    f = font(TEXT_SIZE)
    draw.text((x0, top + ramp_h + 4), low, font=f, fill=INK, anchor="la")
    draw.text((x1, top + ramp_h + 4), high, font=f, fill=INK, anchor="ra")
    return np.asarray(canvas)


def message_card(text: str, width: int = 320, height: int = 120) -> np.ndarray:
    """A picture that says why there is no picture."""
    canvas = Image.new("RGB", (width, height), PAPER)
    draw = ImageDraw.Draw(canvas)
    lines = wrap(text, width - 2 * MARGIN)
    draw_lines(draw, width / 2, (height - len(lines) * line_height(TEXT_SIZE)) / 2, lines, align="center")
    draw.rectangle([0, 0, width - 1, height - 1], outline=MUTED)
    return np.asarray(canvas)
