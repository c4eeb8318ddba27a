"""Pictures for people: titled panels side by side with a colour legend, as one RGB array.

Text is drawn with Pillow (a dependency of scikit-image) and its built-in font, so no
font file and no plotting library is needed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
TEXT = (33, 37, 41)
MUTED = (96, 103, 112)
MARGIN = 16
GAP = 12
SWATCH = 14


def titled_figure(
    panels: list[tuple[str, np.ndarray]],
    legend: list[tuple[str, tuple[float, float, float]]],
    heading: str = "",
    footnote: str = "",
    min_width: int = 960,
) -> np.ndarray:
    """Lay out ``panels`` in a row, each under its title, with a legend below them.

    Args:
        panels: ``(title, uint8 (Y, X, 3) picture)``; all pictures the same size. They are
            enlarged by the smallest whole factor that makes the figure ``min_width`` wide
            (nearest neighbour, so every voxel stays a sharp square).
        legend: ``(name, RGB colour in [0, 1])`` entries, drawn as swatches with their names.
        heading: a line above the panels; footnote: a smaller line below the legend.

    Returns:
        uint8 ``(height, width, 3)``, width at least ``min_width``.
    """
    height, width = panels[0][1].shape[:2]
    count = len(panels)
    scale = max(1, int(np.ceil((min_width - 2 * MARGIN - (count - 1) * GAP) / (count * width))))
    panel_width, panel_height = width * scale, height * scale
    title_font, text_font, small_font = _font(17), _font(15), _font(13)
    title_height = _line_height(title_font) + 8
    heading_height = _line_height(title_font) + 12 if heading else 0
    legend_height = max(SWATCH, _line_height(text_font)) + 14
    footnote_height = _line_height(small_font) + 8 if footnote else 0
    figure_width = 2 * MARGIN + count * panel_width + (count - 1) * GAP
    figure_height = MARGIN + heading_height + title_height + panel_height + legend_height + footnote_height + MARGIN
    figure = Image.new("RGB", (figure_width, figure_height), BACKGROUND)
    draw = ImageDraw.Draw(figure)
    top = MARGIN
    if heading:
        draw.text((MARGIN, top), heading, fill=TEXT, font=title_font)
        top += heading_height
    for index, (title, picture) in enumerate(panels):
        left = MARGIN + index * (panel_width + GAP)
        draw.text((left, top), _fit(draw, title, title_font, panel_width), fill=TEXT, font=title_font)
        enlarged = Image.fromarray(np.ascontiguousarray(picture)).resize((panel_width, panel_height), Image.NEAREST)
        figure.paste(enlarged, (left, top + title_height))
    top += title_height + panel_height + 10
    left = MARGIN
    for name, colour in legend:
        fill = tuple(int(round(255 * channel)) for channel in colour)
        draw.rectangle((left, top + 2, left + SWATCH, top + 2 + SWATCH), fill=fill, outline=MUTED)
        draw.text((left + SWATCH + 6, top), name, fill=TEXT, font=text_font)
        left += SWATCH + 6 + int(draw.textlength(name, font=text_font)) + 22
    if footnote:
        draw.text((MARGIN, top + legend_height - 4), footnote, fill=MUTED, font=small_font)
    return np.asarray(figure)


def _font(size: int) -> ImageFont.ImageFont:
    """Pillow's built-in scalable font at ``size`` px; its bitmap font where FreeType is missing."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _line_height(font: ImageFont.ImageFont) -> int:
    box = font.getbbox("Ag")
    return int(box[3] - box[1]) + 4


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: int) -> str:
    """``text``, shortened with an ellipsis until it fits in ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
