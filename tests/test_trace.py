"""`tiltsweep trace`: a finished point replayed densely, the same steps as in the sweep, and the
figures that draw it."""

import numpy as np
import pandas as pd
import pytest

from tiltsweep.analysis import plots
from tiltsweep.sweep.commands.cli import main
from tiltsweep.sweep.store import ResultsDir

pytestmark = pytest.mark.slow

GRID = """\
name: traced
data: {name: spiral, points_per_class: 30, classes: 3}
model: {name: mlp, width: 10}
optimizer: {name: sgd, learning_rate: 1.0, batch_size: full}
training: {epochs: 1500, eval_every: 500, checkpoint_every: 1000, hessian_every: 500, hessian_order: 8}
loss: {amplitude: 10, period: 200}
grid:
  seed: [0]
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("trace")
    (root / "grid.yaml").write_text(GRID)
    assert main(["run", str(root / "grid.yaml"), "--out", str(root / "results"), "--no-plot"]) == 0
    return root / "results" / "traced"


def test_a_trace_is_the_sweeps_training_evaluated_densely(swept, capsys):
    curves = pd.read_parquet(swept / "curves.parquet")
    trial_id = curves["trial_id"].iloc[0]
    before = plots.trajectory(swept, trial_id)
    assert before.findobj(lambda artist: artist.get_gid() == "too-sparse")  # 500 steps apart, T = 200: said, not drawn

    capsys.readouterr()
    assert main(["trace", str(swept), trial_id[:8], "--every", "50"]) == 0
    out = capsys.readouterr().out
    assert f"{trial_id}: 31 rows, every 50 steps" in out and "matches the sweep's record at all 4 of its evaluations" in out
    trace = pd.read_parquet(swept / "traces" / f"{trial_id}.parquet")
    assert trace["step"].tolist() == list(range(0, 1501, 50))
    assert trace["hessian_eig_1"].notna().all()  # measured at every row
    recorded = curves[curves["trial_id"] == trial_id].sort_values("step").reset_index(drop=True)
    at_evaluations = trace[trace["step"].isin(recorded["step"])].reset_index(drop=True)
    assert list(recorded.columns) == list(at_evaluations.columns)
    pd.testing.assert_frame_equal(at_evaluations, recorded, check_exact=True)  # bit for bit, Hessian included

    view = plots.one_trial(plots.load_results(swept), trial_id)
    assert view.source == "trace" and len(view.curve) == 31
    after = plots.trajectory(swept, trial_id)
    assert not after.findobj(lambda artist: artist.get_gid() == "too-sparse")
    gamma = after.axes[0].get_lines()[0]
    assert len(gamma.get_xdata()) == 1501  # Gamma_i(t) from its formula at every step, whatever the evaluations
    np.testing.assert_allclose(np.asarray(after.axes[0].get_lines()[0].get_ydata())[[0, 100]], [1.0, 3 * 10 / 12])
    assert (swept / "figures" / f"trajectory_{trial_id}.png").exists() and (swept / "figures" / f"hessian_{trial_id}.png").exists()


@pytest.mark.parametrize("args,expected", [
    (["--every", "0"], "--every 0: must be a positive multiple of an epoch's 1 steps"),
    (None, "no recorded trial whose id starts with 'ffff'"),
])
def test_trace_refuses_what_it_cannot_replay(swept, capsys, args, expected):
    trial = "ffff" if args is None else next(iter(ResultsDir(swept).records.outcomes(on_corrupt=print)))
    capsys.readouterr()
    assert main(["trace", str(swept), trial, *(args or [])]) == 2
    error = capsys.readouterr().err
    assert expected in error and error.count("\n") == 1, error
