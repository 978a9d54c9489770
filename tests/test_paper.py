"""grids/paper/: every grid names what it reproduces, what it needs and how long it takes; the
smoke variants of those that run on a CPU run here, to their figures."""

from pathlib import Path

import pandas as pd
import pytest

from tiltsweep.sweep.commands.cli import main
from tiltsweep.sweep.grid import load_grid

PAPER = Path(__file__).resolve().parent.parent / "grids" / "paper"
ON_A_CPU = {"fig4-bifurcations.yaml": ["trajectory_", "hessian_", "curves_"], "spiral-phase-diagrams.yaml": ["phase_", "band_", "trajectory_"]}


@pytest.mark.parametrize("path", sorted(PAPER.glob("*.yaml")), ids=lambda p: p.name)
def test_each_paper_grid_says_what_it_reproduces_needs_and_takes(path):
    header = path.read_text().split("\nname:")[0]
    for word in ("Reproduces:", "Needs:", "Here"):
        assert word in header, f"{path.name}: no {word!r} in its opening comment"
    assert load_grid(path, check_data=False).points and load_grid(path, check_data=False, smoke=True).points
    assert (path.name in ON_A_CPU) == ("Needs: nothing but a CPU" in header)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ON_A_CPU))
def test_the_cpu_paper_grids_smoke_variants_run_to_their_figures(tmp_path, name):
    assert main(["run", str(PAPER / name), "--smoke", "--out", str(tmp_path)]) == 0
    directory = tmp_path / f"{load_grid(PAPER / name, smoke=True).name}"
    summary = pd.read_parquet(directory / "summary.parquet")
    assert set(summary["status"]) == {"completed"}
    drawn = [p.name for p in (directory / "figures").glob("*.png")]
    for prefix in ON_A_CPU[name]:
        assert any(file.startswith(prefix) for file in drawn), (prefix, drawn)
