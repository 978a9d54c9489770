"""Static figures that fit: every drawn text (titles, labels, tick labels, cell numbers, legends)
lies inside the canvas, whatever the number of cells, down to a 2 x 2 diagram with a long name."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

from tiltsweep.analysis import figures

LONG = "a-rather-long-sweep-name-spiral-width: final val_accuracy (mean ± std over seeds)"


def reduced(xs, ys, x="model.width", y="amplitude") -> pd.DataFrame:
    rows = [{x: a, y: b, "mean": 0.5 + 0.01 * i, "std": 0.02, "n": 3, "n_diverged": 0, "n_failed": 0, "n_trials": 3, "cell_status": "ok"}
            for i, (a, b) in enumerate(itertools.product(xs, ys))]
    return pd.DataFrame(rows)


def texts_outside(figure) -> list[str]:
    """What is drawn outside the canvas (by more than a pixel): each axes with its title, labels,
    drawn tick labels, cell numbers and legend (its tight box), and each text of the figure's own
    (suptitle, notes)."""
    canvas = FigureCanvasAgg(figure)
    figure.set_dpi(130)  # as figures.save draws it
    canvas.draw()
    renderer = canvas.get_renderer()
    items = [(f"axes {index} ({axes.get_title()!r})", axes.get_tightbbox(renderer)) for index, axes in enumerate(figure.axes) if axes.get_visible()]
    items += [(repr(text.get_text()), text.get_window_extent(renderer)) for text in figure.get_children()
              if isinstance(text, Text) and text.get_visible() and text.get_text().strip()]
    items += [("a figure legend", legend.get_window_extent(renderer)) for legend in figure.legends]
    width, height = figure.bbox.width, figure.bbox.height
    return [f"{what} at {box.x0:.0f}..{box.x1:.0f} x {box.y0:.0f}..{box.y1:.0f} in {width:.0f} x {height:.0f}"
            for what, box in items if box.x0 < -1 or box.y0 < -1 or box.x1 > width + 1 or box.y1 > height + 1]


@pytest.mark.parametrize("shape", [(2, 2), (1, 1), (2, 9), (12, 3), (15, 15)])
def test_phase_diagram_text_stays_inside_the_canvas(shape):
    table = reduced([8 * (k + 1) for k in range(shape[0])], [3.0 ** k for k in range(shape[1])])
    assert texts_outside(figures.phase_diagram(table, "model.width", "amplitude", LONG, "final val_accuracy")) == []


def test_faceted_and_side_by_side_diagrams_and_the_band_stay_inside_the_canvas():
    faceted = pd.concat([reduced([8, 16], [1.0, 10.0]).assign(period=t) for t in (100, 1000)])[
        ["period", "model.width", "amplitude", "mean", "std", "n", "n_diverged", "n_failed", "n_trials", "cell_status"]]
    assert texts_outside(figures.phase_diagram(faceted, "model.width", "amplitude", LONG, "final val_accuracy")) == []
    panels = [(f"sub-grid {i + 1}: amplitude against model.width", reduced([8, 16], [1.0, 10.0]), "model.width", "amplitude") for i in range(2)]
    assert texts_outside(figures.side_by_side(panels, LONG, "final val_accuracy")) == []
    band = reduced([1.0, 10.0], [100, 1000], x="amplitude", y="period")
    assert texts_outside(figures.std_band(band, "amplitude", ("period",), LONG, "final val_accuracy")) == []
    curves = pd.DataFrame([{"amplitude": a, "period": t, "epoch": e, "mean": 0.5, "std": 0.1, "n": 3}
                           for a in (1.0, 10.0) for t in (100, 1000) for e in range(0, 300, 50)])
    assert texts_outside(figures.learning_curves(curves, "val_accuracy", "amplitude", "period", 250, LONG)) == []


def test_the_check_finds_a_text_that_leaves_the_canvas():
    figure = figures.phase_diagram(reduced([8, 16], [1.0, 10.0]), "model.width", "amplitude", "short", "v")
    figure.text(0.98, 0.5, "a label pushed past the right edge")
    assert len(texts_outside(figure)) == 1
