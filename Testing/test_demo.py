"""The demo's figure: titled panels with a legend (the demo itself runs end to end in test_readme.py)."""

from __future__ import annotations

import numpy as np

from weakseg.figure import titled_figure


def test_titled_figure_enlarges_panels_and_draws_titles_and_legend():
    panel = np.zeros((20, 30, 3), dtype=np.uint8)
    panel[:, :, 1] = 200
    figure = titled_figure([("first", panel), ("second", panel)], [("class A", (1.0, 0.0, 0.0))],
                           heading="heading", footnote="note", min_width=800)
    assert figure.dtype == np.uint8 and figure.shape[1] >= 800 and figure.shape[2] == 3
    green = np.all(figure == (0, 200, 0), axis=-1)
    rows, columns = np.nonzero(green)
    assert columns.max() - columns.min() + 1 > 2 * 30 * 10, "panels are not enlarged"
    dark_text = np.all(figure < 80, axis=-1) & ~green
    assert dark_text[: rows.min()].sum() > 100, "no title or heading above the panels"
    assert np.all(figure == (255, 0, 0), axis=-1)[rows.max():].sum() > 50, "no legend swatch below the panels"
