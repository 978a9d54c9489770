"""`tiltsweep refine`: points proposed where they tell most, recorded, and run like any other."""

import json

import pytest

from tiltsweep.analysis import plots
from tiltsweep.analysis.load import load_results
from tiltsweep.sweep.commands.cli import main, spec_to_run
from tiltsweep.sweep.commands.refine import halfway, propose_boundary, propose_seeds
from sweep_helpers import records, status_json

GRID = """\
name: refined
data: {name: spiral, points_per_class: 30, classes: 3}
model: {name: mlp, width: 10}
optimizer: {name: sgd, learning_rate: 1.0, batch_size: full}
training: {epochs: 1000, eval_every: 500, checkpoint_every: 500}
loss: {amplitude: 1, period: 200}
grid:
  amplitude: [1, 30]
  period: [100, 1000]
  seed: [0, 1]
"""


def test_halfway_is_geometric_over_decades_and_keeps_its_distance():
    assert halfway(100.0, 1000.0, [100.0, 1000.0, 10000.0]) == 316.0  # sqrt(100 * 1000), 3 digits
    assert halfway(10.0, 20.0, [10.0, 20.0, 30.0]) == 15.0
    assert halfway(20, 40, [20, 40]) == 30 and isinstance(halfway(20, 40, [20, 40]), int)
    assert halfway(10, 11, [10, 11]) is None  # an integer axis has nothing between 10 and 11


@pytest.mark.slow
def test_refine_adds_at_most_its_budget_and_only_those_train(tmp_path, capsys):
    (tmp_path / "grid.yaml").write_text(GRID)
    out = tmp_path / "results"
    assert main(["run", str(tmp_path / "grid.yaml"), "--out", str(out), "--no-plot"]) == 0
    directory = out / "refined"
    before = records(directory)
    assert len(before) == 6  # A = 1 trains once per seed for both periods

    proposed = propose_boundary(load_results(directory), 5, "val_accuracy", "period", "amplitude")
    assert proposed == propose_boundary(load_results(directory), 5, "val_accuracy", "period", "amplitude")  # deterministic
    assert proposed and len(proposed) % 2 == 0 and {point["seed"] for point in proposed} == {0, 1}  # whole cells, every seed
    for bad in (["--format", "gif"], ["--no-plot", "--log-to", "bogus"]):  # refused before the points are added
        assert main(["refine", str(directory), "--budget", "5", *bad]) == 2
        assert not (directory / "refinements.json").exists()
    capsys.readouterr()
    assert main(["refine", str(directory), "--budget", "5", "--no-plot"]) == 0
    out_text = capsys.readouterr().out
    after = records(directory)
    new = len(after) - 6
    assert 0 < new <= 5  # the budget counts trainings (A = 1 at a new period is free: the same training)
    assert f"{len(proposed)} new points, {new} new trainings" in out_text and f"{6 + new} points, 6 already done, {new} to run" in out_text
    for trial_id, record in before.items():  # nothing trained twice
        assert after[trial_id]["finished_at"] == record["finished_at"]
    rounds = json.loads((directory / "refinements.json").read_text())["rounds"]
    assert [round["points"] for round in rounds] == [proposed]
    status = status_json(directory)
    assert (status["total"], status["completed"]) == (6 + new, 6 + new)

    # The extended sweep is what `run` of the same grid file and the figures see.
    spec, _ = spec_to_run(tmp_path / "grid.yaml", out)
    assert {p.trial_id for p in spec.points} == set(after)
    table = plots.phase_table(directory)
    for point in proposed:
        cell = table[(table["amplitude"] == point["amplitude"]) & (table["period"] == point["period"])]
        assert cell["n"].tolist() == [2] and cell["cell_status"].tolist() == ["ok"]
    measured = {(point["amplitude"], point["period"]) for point in proposed} | {(a, t) for a in (1, 30) for t in (100, 1000)}
    assert {(row.amplitude, row.period) for row in table.itertuples() if row.cell_status != "not measured"} == measured

    more = propose_seeds(load_results(directory), "val_accuracy", 1e-9, 3)
    assert {point["seed"] for point in more} == {2}  # every cell of two seeds gets its third, and no more
    assert main(["refine", str(directory), "--budget", "1"]) == 2  # less than one cell's seeds
