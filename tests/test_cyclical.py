"""Cyclical learning rates beside dynamical losses, on real sweeps: interpolation between kept
states, the learning-rate range test, and the two kinds of phase diagram side by side."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest

import browser

from tiltsweep.analysis import figures, plots
from tiltsweep.sweep.commands.cli import main
from tiltsweep.sweep.commands.lr_range import run_range_test
from tiltsweep.sweep.store import ResultsDir

pytestmark = pytest.mark.slow

GRID = """\
name: two-oscillations
data: {name: spiral, points_per_class: 30, classes: 3}
model: {name: mlp, width: 10}
optimizer: {name: sgd, learning_rate: 0.5, batch_size: full}
training: {epochs: 600, eval_every: 100, checkpoint_every: 200, keep_checkpoints: true}
loss: {amplitude: 1, period: 100}
grid:
  - amplitude: [1, 10]
    period: [50, 200]
  - schedule.name: [triangular]
    schedule.base_lr: [0.5]
    schedule.ratio: [1, 3]
    schedule.period: [50, 200]
"""


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cyclical")
    (root / "grid.yaml").write_text(GRID)
    assert main(["run", str(root / "grid.yaml"), "--out", str(root / "results")]) == 0
    return root / "results" / "two-oscillations"


def final_rows(directory):
    curves = pd.read_parquet(directory / "curves.parquet")
    return curves.sort_values("step").groupby("trial_id").last()


def test_interpolation_ends_reproduce_both_models_exactly(sweep_dir, capsys):
    summary = pd.read_parquet(sweep_dir / "summary.parquet")
    a, b = summary["trial_id"].iloc[0], summary["trial_id"].iloc[3]
    capsys.readouterr()
    assert main(["interpolate", str(sweep_dir), a, b]) == 0
    assert f"at {a}," in capsys.readouterr().out
    frame = pd.read_parquet(sweep_dir / "interpolations" / f"{a}__{b}.parquet").set_index("alpha")
    assert list(frame.index[[0, -1]]) == [-0.5, 1.5] and len(frame) == 41
    finals = final_rows(sweep_dir)
    for alpha, trial in ((0.0, a), (1.0, b)):
        for metric in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert frame.loc[alpha, metric] == finals.loc[trial, metric], (alpha, metric)
    assert (sweep_dir / "figures" / f"interpolation_{a}__{b}.png").stat().st_size > 1000


def test_interpolation_between_two_kept_epochs_of_one_trial(sweep_dir):
    trial = pd.read_parquet(sweep_dir / "summary.parquet")["trial_id"].iloc[5]
    results = ResultsDir(sweep_dir)
    pack_id = results.records.all(on_corrupt=print)[trial][0]
    assert {epoch for t, epoch in results.states.kept(pack_id) if t == trial} == {200, 400, None}  # None: the final state
    assert main(["interpolate", str(sweep_dir), f"{trial}@200", f"{trial}@400"]) == 0
    frame = pd.read_parquet(sweep_dir / "interpolations" / f"{trial}-at-200__{trial}-at-400.parquet").set_index("alpha")
    curve = pd.read_parquet(sweep_dir / "curves.parquet").query("trial_id == @trial").set_index("epoch")
    for alpha, epoch in ((0.0, 200), (1.0, 400)):
        assert frame.loc[alpha, "train_accuracy"] == curve.loc[epoch, "train_accuracy"]
        assert frame.loc[alpha, "val_loss"] == curve.loc[epoch, "val_loss"]


def test_interpolating_what_was_not_kept_is_refused(sweep_dir, capsys):
    trial = pd.read_parquet(sweep_dir / "summary.parquet")["trial_id"].iloc[0]
    capsys.readouterr()
    assert main(["interpolate", str(sweep_dir), f"{trial}@300", trial]) == 2
    assert "no kept state at epoch 300 (kept: epoch 200, epoch 400, final;" in capsys.readouterr().err


def test_the_two_phase_diagrams_side_by_side(sweep_dir):
    assert (sweep_dir / "figures" / "side_by_side_val_accuracy.png").exists()
    tables = plots.side_by_side_tables(sweep_dir)
    assert [(x, y) for _, _, x, y in tables] == [("period", "amplitude"), ("schedule.period", "schedule.ratio")]
    figure = plots.side_by_side(sweep_dir, tables=tables)
    for index, (_, table, x, y) in enumerate(tables):
        texts = {a.get_gid(): a.get_text() for a in figure.findobj(lambda a: (a.get_gid() or "").startswith(f"{index}/cell:"))}
        assert len(texts) == 4
        for _, row in table.iterrows():
            assert texts[f"{index}/cell:{row[x]:g}:{row[y]:g}"].splitlines()[0] == f"{row['mean']:.3f}"


def test_the_report_has_a_panel_per_subgrid_each_with_its_own_metrics(sweep_dir):
    """The run drew the interactive report; its second panel (the cyclical rates, no A = 1) has no
    gain, and its cells are side_by_side's table."""
    page = (sweep_dir / "figures" / "index.html").read_text()
    data = json.loads(re.search(r"<script type='application/json' id='report-data'>(.*?)</script>", page, re.S).group(1))
    assert len(data["panels"]) == 2 and "<label >panel <select id='panel'>" in page
    assert [key for key, _ in data["metrics"][0]][-1] == "val_accuracy_gain"
    assert not any(key.endswith("_gain") for key, _ in data["metrics"][1])
    _, table, x, y = plots.side_by_side_tables(sweep_dir)[1]
    rows = {(r["x"], r["y"]): r for r in data["panels"][1]["datasets"]["cells"] if r["metric"] == "val_accuracy"}
    assert len(rows) == len(table) == 4
    for row in table.to_dict("records"):
        assert rows[(figures.value_text(row[x]), figures.value_text(row[y]))]["mean"] == pytest.approx(row["mean"], rel=1e-12)


@pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing()))
def test_the_panel_control_shows_a_subgrid_with_its_own_metrics_in_chromium(sweep_dir):
    from selenium.webdriver.support.ui import Select, WebDriverWait

    with browser.chromium() as driver:
        driver.get((sweep_dir / "figures" / "index.html").as_uri())
        browser.wait_until_ready(driver)
        metrics = lambda: [o.get_attribute("value") for o in Select(driver.find_element("id", "metric")).options]
        assert "val_accuracy_gain" in metrics() and driver.find_element("id", "panel-0").is_displayed()
        Select(driver.find_element("id", "panel")).select_by_value("1")
        WebDriverWait(driver, 10).until(lambda d: d.find_element("id", "panel-1").is_displayed())
        assert not driver.find_element("id", "panel-0").is_displayed() and "val_accuracy_gain" not in metrics()
        assert "schedule.ratio" in driver.find_element("id", "panel-1").text


def test_range_test_rates_rise_linearly_and_suggestions_fall_inside(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID)
    capsys.readouterr()
    assert main(["lr-range", str(grid), "--out", str(tmp_path), "--min-lr", "0.5", "--max-lr", "3", "--epochs", "400", "--evaluations", "100"]) == 0
    out = capsys.readouterr().out
    frame = pd.read_parquet(tmp_path / "two-oscillations" / "lr-range" / "range.parquet")
    expected = 0.5 + (3 - 0.5) * frame["step"] / 400
    assert (frame["learning_rate"] - expected).abs().max() < 1e-6
    assert len(frame) == 101 and frame["learning_rate"].iloc[-1] == pytest.approx(3.0)  # every 4 of 400 steps, whatever eval_every (100) says
    base, top = map(float, re.search(r"suggested base_lr (\S+), max_lr (\S+)", out).groups())
    assert 0.5 <= base < top <= 3.0
    assert (tmp_path / "two-oscillations" / "figures" / "lr_range.png").exists()


def test_range_test_over_decades_rises_geometrically_and_evaluates_within_epochs(tmp_path):
    """digits in minibatches of 64: 21 steps an epoch, 6 epochs, 4 decades of rates."""
    grid = tmp_path / "digits.yaml"
    grid.write_text(GRID.replace("name: spiral, points_per_class: 30, classes: 3", "name: digits").replace("batch_size: full", "batch_size: 64")
                    .replace("epochs: 600, eval_every: 100", "epochs: 6, eval_every: 3").replace("checkpoint_every: 200", "checkpoint_every: 3"))
    frame, suggestion, _, figure = run_range_test(grid, tmp_path, 1e-3, 10.0)
    steps = 6 * 21
    assert len(frame) == steps + 1 and frame["step"].tolist() == list(range(steps + 1))  # 200 asked, one a step at most
    assert frame.groupby("epoch").size().max() > 1  # evaluated within epochs
    expected = 1e-3 * (10.0 / 1e-3) ** (frame["step"] / steps)
    assert ((frame["learning_rate"] - expected).abs() / expected).max() < 1e-5
    drawn = figures.lr_range(frame, suggestion, log_rate=True)
    assert {panel.get_xscale() for panel in drawn.axes} == {"log"}
    assert 1e-3 <= suggestion["base_lr"] <= suggestion["max_lr"] <= 10.0
    assert Path(figure).exists()
