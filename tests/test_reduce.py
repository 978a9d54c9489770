"""Reducers on small hand-written frames, with the numbers worked out by hand."""

import math

import pandas as pd
import pytest

from tiltsweep.analysis.reduce import (
    curve_bands, gain_over_baseline, holm, metric_at_epoch, paired_gain_test, reduce_seeds, significance_table,
)

AXES = {"amplitude": [1, 10], "period": [100, 200], "seed": [0, 1, 2]}


def trials(rows):
    """rows: (amplitude, period, seed, status, val_accuracy)."""
    frame = pd.DataFrame(rows, columns=["amplitude", "period", "seed", "status", "val_accuracy"])
    frame.insert(0, "trial_id", [f"t{i}" for i in range(len(frame))])
    return frame


SUMMARY = trials([
    (1.0, 100.0, 0, "completed", 0.50), (1.0, 100.0, 1, "completed", 0.60), (1.0, 100.0, 2, "completed", 0.70),
    (10.0, 100.0, 0, "completed", 0.80), (10.0, 100.0, 1, "diverged", 0.10), (10.0, 100.0, 2, "failed", math.nan),
    (1.0, 200.0, 0, "completed", 0.40),
    (10.0, 200.0, 0, "diverged", 0.20), (10.0, 200.0, 1, "diverged", 0.30),
])


def cell(reduced, amplitude, period):
    return reduced.set_index(["amplitude", "period"]).loc[(amplitude, period)]


def test_mean_std_and_counts_over_completed_seeds():
    reduced = reduce_seeds(SUMMARY, "val_accuracy", AXES)
    assert len(reduced) == 4  # the full 2 x 2 grid
    full = cell(reduced, 1, 100)
    assert full["mean"] == pytest.approx(0.6)
    assert full["std"] == pytest.approx(0.1)  # sample std (ddof 1) of 0.5, 0.6, 0.7
    assert (full["n"], full["n_diverged"], full["n_failed"], full["n_trials"], full["cell_status"]) == (3, 0, 0, 3, "ok")


def test_diverged_and_failed_seeds_are_counted_not_averaged():
    mixed = cell(reduce_seeds(SUMMARY, "val_accuracy", AXES), 10, 100)
    assert mixed["mean"] == pytest.approx(0.8)  # the diverged seed's 0.10 is not in the mean
    assert math.isnan(mixed["std"])  # one completed seed: no spread
    assert (mixed["n"], mixed["n_diverged"], mixed["n_failed"], mixed["cell_status"]) == (1, 1, 1, "ok")


def test_cells_without_a_completed_seed_say_why():
    reduced = reduce_seeds(SUMMARY, "val_accuracy", AXES)
    diverged = cell(reduced, 10, 200)
    assert diverged["cell_status"] == "diverged" and math.isnan(diverged["mean"]) and diverged["n_diverged"] == 2
    partial_grid = reduce_seeds(SUMMARY, "val_accuracy", {**AXES, "period": [100, 200, 400]})
    missing = cell(partial_grid, 1, 400)
    assert missing["cell_status"] == "missing" and missing["n_trials"] == 0
    failed = reduce_seeds(trials([(1.0, 100.0, 0, "failed", math.nan)]), "val_accuracy", {"amplitude": [1], "period": [100]})
    assert failed.loc[0, "cell_status"] == "failed"


def test_gain_is_paired_by_seed_against_the_amplitude_one_row():
    gains = gain_over_baseline(SUMMARY, "val_accuracy", AXES).set_index("trial_id")["val_accuracy_gain"]
    assert gains["t0"] == 0.0 and gains["t1"] == 0.0  # the baseline itself
    assert gains["t3"] == pytest.approx(0.8 - 0.5)  # A=10 seed 0 minus A=1 seed 0 at T=100
    assert gains["t4"] == pytest.approx(0.1 - 0.6)
    assert math.isnan(gains["t8"])  # T=200 seed 1 has no completed A=1 partner
    reduced = reduce_seeds(gain_over_baseline(SUMMARY, "val_accuracy", AXES), "val_accuracy_gain", AXES)
    assert cell(reduced, 10, 100)["mean"] == pytest.approx(0.3)


def test_metric_at_an_epoch_takes_the_last_evaluation_by_then():
    curves = pd.DataFrame({
        "trial_id": ["t0", "t0", "t0", "t1", "t1"],
        "epoch": [0, 50, 100, 0, 100],
        "val_accuracy": [0.3, 0.45, 0.5, 0.2, 0.6],
    })
    at = metric_at_epoch(SUMMARY.iloc[:3], curves, "val_accuracy", 60).set_index("trial_id")["val_accuracy"]
    assert at["t0"] == 0.45 and at["t1"] == 0.2 and math.isnan(at["t2"])


def test_curve_bands_average_completed_seeds_per_epoch():
    curves = pd.DataFrame({
        "trial_id": ["t0", "t1", "t2", "t4", "t0", "t1", "t2"],
        "epoch": [0, 0, 0, 0, 10, 10, 10],
        "val_accuracy": [0.3, 0.4, 0.5, 0.9, 0.5, 0.6, 0.7],
    })
    bands = curve_bands(curves, SUMMARY, AXES, "val_accuracy").set_index(["amplitude", "period", "epoch"])
    assert bands.loc[(1.0, 100.0, 10), "mean"] == pytest.approx(0.6)
    assert bands.loc[(1.0, 100.0, 10), "std"] == pytest.approx(0.1)
    assert (10.0, 100.0, 0) not in bands.index  # t4 diverged: not in the bands


def test_instability_threshold_is_the_mean_top_eigenvalue_at_starts_and_ends():
    from tiltsweep.analysis.reduce import instability_threshold

    steps = [0, 25, 50, 75, 100, 125, 150, 175, 200]
    top = [1.00, 1.02, 1.05, 1.30, 1.60, 1.62, 1.64, 1.20, 1.21]  # jumps at 75, 100 and at 175
    found = instability_threshold(steps, top, jump=0.1)
    assert found["starts"] == [75, 175] and found["ends"] == [100, 175]
    assert found["threshold"] == pytest.approx((1.30 + 1.60 + 1.20 + 1.20) / 4)
    calm = instability_threshold(steps, [1.0 + 0.01 * i for i in range(9)], jump=0.1)
    assert calm["starts"] == [] and math.isnan(calm["threshold"])
    with_gaps = instability_threshold([0, 10, 20, 30], [1.0, float("nan"), 1.5, 1.5], jump=0.1)
    assert with_gaps["starts"] == [20]  # NaN rows (no measurement there) are skipped


def test_suggested_rates_mark_the_take_off_and_the_peak_of_accuracy():
    from tiltsweep.analysis.reduce import suggest_learning_rates

    rates = [0.001 * i for i in range(1, 101)]
    accuracy = [0.1] * 20 + [0.1 + 0.02 * i for i in range(40)] + [0.88] * 10 + [0.5] * 30  # rises at 21, reaches 0.88 at 60
    found = suggest_learning_rates(rates, accuracy, smoothing=0.01)
    assert found["base_lr"] == pytest.approx(0.025)  # the first point past a tenth of the rise (0.1 + 0.078)
    assert found["max_lr"] == pytest.approx(0.060)  # the first point at the top (0.88 at index 59)
    flat = suggest_learning_rates(rates, [0.5] * 100, smoothing=0.01)
    assert flat["base_lr"] == pytest.approx(flat["max_lr"] / 4)


def test_analysis_reads_the_axes_the_run_wrote_and_never_the_grid_file(tmp_path):
    """The axes, sub-grids and points come from sweep.json; a grid.yaml that no longer parses
    (an older version's keys) does not matter to analysis."""
    from tiltsweep.analysis.load import load_results
    from tiltsweep.sweep.grid import load_grid
    from tiltsweep.sweep.store import ResultsDir

    grid = tmp_path / "subgrids.yaml"
    grid.write_text("name: subgrids\ndata: {name: spiral}\nmodel: {name: mlp}\ntraining: {epochs: 10}\n"
                    "grid:\n  - {amplitude: [1, 10], period: [5, 7]}\n  - {amplitude: [1, 30], seed: [0, 1]}\n")
    results = ResultsDir(tmp_path / "results")
    results.save_grid("name: subgrids\nan_old_key: 3\n", grid, load_grid(grid).description())
    loaded = load_results(results.root)
    assert loaded.name == "subgrids" and loaded.axes == {"amplitude": [1, 10, 30], "period": [5, 7], "seed": [0, 1]}
    assert [sub["axes"] for sub in loaded.subgrids] == [{"amplitude": [1, 10], "period": [5, 7]}, {"amplitude": [1, 30], "seed": [0, 1]}]
    assert loaded.summary.empty and {"trial_id", "amplitude", "period", "seed", "val_accuracy"} <= set(loaded.summary.columns)


def test_the_paired_t_interval_and_p_value_worked_out_by_hand():
    """Gains 0.1, 0.2, 0.3, 0.4: mean 0.25, s = 0.129099, se = s / 2 = 0.064550, t = 3.8730 with
    3 degrees of freedom; t_{0.975, 3} = 3.182446, so the 95% interval is 0.25 -+ 0.205426 and the
    two-sided p-value is 0.030466."""
    test = paired_gain_test([0.1, 0.2, 0.3, 0.4])
    assert test["mean"] == pytest.approx(0.25) and test["std"] == pytest.approx(0.129099, abs=1e-6) and test["n"] == 4
    assert (test["ci_low"], test["ci_high"]) == (pytest.approx(0.044574, abs=1e-6), pytest.approx(0.455426, abs=1e-6))
    assert test["p_value"] == pytest.approx(0.030466, abs=1e-6)
    alone = paired_gain_test([0.3, math.nan])
    assert alone["n"] == 1 and alone["test"] == "too few seeds" and math.isnan(alone["p_value"]) and math.isnan(alone["ci_low"])


def test_holm_adjusts_over_the_tested_cells_only():
    """p = 0.01, 0.04, 0.03 (and an untested cell): sorted 0.01 x 3 = 0.03, 0.03 x 2 = 0.06,
    0.04 x 1 = 0.04, raised to the running maximum 0.06."""
    adjusted = holm([0.01, 0.04, 0.03, math.nan])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adjusted[3])


def test_significance_per_cell_pairs_each_seed_with_its_baseline():
    rows = [(1.0, period, seed, "completed", 0.50 + 0.01 * seed) for period in (100.0, 200.0) for seed in range(4)]
    rows += [(10.0, 100.0, seed, "completed", 0.60 + 0.01 * seed + gain) for seed, gain in enumerate([0.0, 0.002, -0.002, 0.001])]
    rows += [(10.0, 200.0, 0, "completed", 0.9), (10.0, 200.0, 1, "failed", math.nan)]
    table = significance_table(trials(rows), "val_accuracy", {"amplitude": [1, 10], "period": [100, 200], "seed": [0, 1, 2, 3]})
    strong = cell(table, 10, 100)  # gains 0.100, 0.102, 0.098, 0.101: paired, the seed offsets cancel
    assert strong["n"] == 4 and strong["mean"] == pytest.approx(0.10025) and strong["ci_low"] > 0.09
    assert strong["p_value"] < 1e-5 and strong["p_adjusted"] == strong["p_value"] and bool(strong["significant"])
    single = cell(table, 10, 200)  # one completed seed: no test, and not counted in the correction
    assert single["test"] == "too few seeds" and math.isnan(single["p_adjusted"]) and not single["significant"]
    assert set(table.loc[table["amplitude"] == 1, "test"]) == {"baseline"}
    assert set(table["correction"]) == {"Holm over 1 cells"}
