"""Figures drawn from a small real results directory: what is annotated equals the reduced
table, and the marked cells are exactly where points failed, diverged or are missing."""

import io
import math
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

import faulty_sweep

from tiltsweep.analysis import plots, reduce
from tiltsweep.analysis.report import build_report
from tiltsweep.sweep.commands.cli import main

pytestmark = pytest.mark.slow

LR = faulty_sweep.LR


@pytest.fixture(scope="module")
def results_dir(faulty_results):
    return faulty_results


def gids(figure: Figure, prefix: str) -> dict[str, object]:
    artists = figure.findobj(lambda artist: (artist.get_gid() or "").startswith(prefix))
    return {artist.get_gid(): artist for artist in artists}


def test_report_writes_every_figure_and_an_index(results_dir):
    paths = [Path(path) for path in build_report(results_dir, formats=["png", "svg"])]  # where they went, as the store shows them
    names = {path.name for path in paths}
    for stem in ("phase_val_accuracy", "phase_train_accuracy", "phase_val_accuracy_gain", "band_val_accuracy", "curves_val_accuracy"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names
    assert any(name.startswith("trajectory_") for name in names)
    for path in (p for p in paths[:-1] if p.suffix != ".csv"):
        assert path.stat().st_size > 1000
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    index = paths[-1].read_text()
    assert paths[-1].name == "index.html"
    for path in paths[:-1]:
        if path.suffix == ".png":
            assert f"src='{path.name}'" in index
    assert "Trials that did not complete" in index and "InjectedFault" in index
    # Every figure's table beside it, as CSV, linked from the index.
    for stem in ("phase_val_accuracy", "phase_val_accuracy_gain", "band_val_accuracy", "curves_val_accuracy"):
        assert f"{stem}.csv" in names and f"href='{stem}.csv'" in index
    gain = pd.read_csv(results_dir / "figures" / "phase_val_accuracy_gain.csv")
    assert {"mean", "std", "n", "ci_low", "ci_high", "p_value", "p_adjusted", "significant", "test"} <= set(gain.columns)
    pd.testing.assert_frame_equal(gain, pd.read_csv(io.StringIO(plots.phase_table(results_dir, gain=True).to_csv(index=False))))


def test_reading_results_loads_no_jax(results_dir):
    """`tiltsweep status`, `tiltsweep plot` and the notebook API only read files."""
    code = (
        "import sys\n"
        "from tiltsweep.sweep.commands.cli import main\n"
        f"main(['status', {str(results_dir)!r}])\n"
        f"main(['plot', {str(results_dir)!r}, '--format', 'png'])\n"
        "from tiltsweep.analysis import plots\n"
        f"plots.phase_diagram({str(results_dir)!r}, x={LR!r}, y='amplitude')\n"
        "print('JAX LOADED' if 'jax' in sys.modules else 'no jax')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines()[-1] == "no jax", done.stdout + done.stderr


def test_heatmap_numbers_equal_the_reduced_table(results_dir):
    figure = plots.phase_diagram(results_dir, x=LR, y="amplitude")
    table = plots.phase_table(results_dir)
    texts = {gid: artist.get_text() for gid, artist in gids(figure, "cell:").items()}
    assert len(texts) == len(table) == 6
    for _, row in table.iterrows():
        text = texts[f"cell:{row[LR]:g}:{row['amplitude']:g}"]
        if row["cell_status"] == "ok":
            lines = text.splitlines()
            assert lines[0] == f"{row['mean']:.3f}"
            assert lines[1] == (f"±{row['std']:.3f}" if row["n"] > 1 else "(1 seed)")
        else:
            assert text.splitlines()[0] == row["cell_status"]


def test_marked_cells_are_where_the_failures_are(results_dir):
    figure = plots.phase_diagram(results_dir, x=LR, y="amplitude")
    marked = {tuple(gid.split(":")[1:]) for gid in gids(figure, "marked:")}
    assert marked == {
        ("diverged", "3", "1"), ("diverged", "3", "10"),  # learning rate 3 diverges
        ("failed", "0.5", "10"),  # both seeds failed
        ("missing", "0.5", "30"), ("missing", "3", "30"),  # added to the grid, not run
    }
    partial = set(gids(figure, "partial:"))
    assert partial == {"partial:0.5:1"}  # one of its two seeds failed
    text = gids(figure, "cell:0.5:1")["cell:0.5:1"].get_text()
    assert text.splitlines()[1:] == ["(1 seed)", "1 fail"]


def test_gain_band_curves_and_trajectory_come_back_as_figures(results_dir):
    gain = plots.phase_diagram(results_dir, x=LR, y="amplitude", gain=True)
    assert gids(gain, "cell:0.5:1")["cell:0.5:1"].get_text().startswith("+0.000")
    band = plots.std_band(results_dir)
    assert {gid.split(":")[1] for gid in gids(band, "marked:")} == {"1", "10"}  # amplitudes with lost seeds
    curves = plots.learning_curves(results_dir)
    assert gids(curves, "stop-epoch")  # the epoch where the oscillations stopped is drawn
    trajectory = plots.trajectory(results_dir)
    assert len(trajectory.axes) == 4
    assert re.search(r"trial [0-9a-f]{16}", trajectory._suptitle.get_text())
    with pytest.raises(plots.PlotError, match="not a swept axis"):
        plots.phase_diagram(results_dir, x="model.width")


def test_hessian_figure_from_a_real_sweep_marks_the_threshold_and_instabilities(tmp_path):
    grid = tmp_path / "hessian.yaml"
    grid.write_text("""\
name: hessian
data: {name: spiral, points_per_class: 50, classes: 3}
model: {name: mlp, width: 30}
optimizer: {name: sgd, learning_rate: 1.0, batch_size: full}
training: {epochs: 3000, eval_every: 10, hessian_every: 10}
loss: {amplitude: 70, period: 300, stop_oscillation_epoch: 2700}
""")
    assert main(["run", str(grid), "--out", str(tmp_path / "results")]) == 0
    directory = tmp_path / "results" / "hessian"
    figures_made = sorted(p.name for p in (directory / "figures").glob("hessian_*.png"))
    assert len(figures_made) == 1
    found = plots.instabilities(directory)
    assert found["starts"] and len(found["starts"]) == len(found["ends"]) and found["threshold"] > 0
    figure = plots.hessian_trajectory(directory)
    assert gids(figure, "threshold")["threshold"].get_ydata()[0] == pytest.approx(found["threshold"])
    assert len(gids_all(figure, "instability-start")) == 3 * len(found["starts"])  # on three panels
    assert "instability starts (step)" in (directory / "figures" / "index.html").read_text()


def gids_all(figure: Figure, gid: str) -> list:
    return figure.findobj(lambda artist: artist.get_gid() == gid)


def test_the_gain_diagram_outlines_the_significant_cells_and_names_its_correction():
    from tiltsweep.analysis import figures

    rows = []
    for period, gains in ((100.0, [0.10, 0.102, 0.098, 0.101]), (200.0, [0.3, -0.2, 0.1, -0.1])):
        rows += [{"amplitude": 1.0, "period": period, "mean": 0.0, "std": 0.0, "n": 4, "n_diverged": 0, "n_failed": 0, "n_trials": 4,
                  "cell_status": "ok", "test": "baseline", "p_adjusted": math.nan, "significant": False}]
        test = reduce.paired_gain_test(gains)
        rows += [{"amplitude": 10.0, "period": period, "mean": test["mean"], "std": test["std"], "n": 4, "n_diverged": 0, "n_failed": 0,
                  "n_trials": 4, "cell_status": "ok", "test": "paired t", "p_value": test["p_value"]}]
    table = pd.DataFrame(rows)
    table["p_adjusted"] = reduce.holm(table["p_value"])
    table["significant"] = table["p_adjusted"] < 0.05
    figure = figures.phase_diagram(table, "period", "amplitude", "gain", fmt="+.3f", cmap="RdBu", center=0.0)
    assert set(gids(figure, "significant:")) == {"significant:100:10"}
    assert gids(figure, "cell:100:10")["cell:100:10"].get_text().splitlines()[-1].endswith("*")
    assert not gids(figure, "cell:200:10")["cell:200:10"].get_text().endswith("*")
    assert "p=" not in gids(figure, "cell:100:1")["cell:100:1"].get_text()  # the baseline is not tested
