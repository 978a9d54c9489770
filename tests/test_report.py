"""The interactive report (figures/index.html) of a small real sweep with failed, diverged and
missing cells: self-contained, its numbers those of the reduced tables, and, in a real headless
Chromium, a hovered cell shows them and a clicked cell shows its seeds' curves."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import altair as alt
import pytest

import browser
from faulty_sweep import LR
from sweep_helpers import Driver, holding, trial_id_at, write_grid
from tiltsweep.analysis import plots
from tiltsweep.analysis.figures import value_text
from tiltsweep.analysis.report import build_report

pytestmark = pytest.mark.slow
POINTS = 6  # the live test's grid: A = 1 (one training per seed at both periods), A = 10 at 2 periods; 2 seeds


@pytest.fixture(scope="module")
def report(faulty_results):
    build_report(faulty_results)
    return faulty_results / "figures" / "index.html"


def report_data(page: str) -> dict:
    return json.loads(re.search(r"<script type='application/json' id='report-data'>(.*?)</script>", page, re.S).group(1))


def test_the_report_is_self_contained_and_shows_the_reduced_tables(report, faulty_results):
    page = report.read_text()
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", page), "the page must load nothing from the network"
    assert "window.vegaEmbed" in page  # Vega's JavaScript is inlined
    data = report_data(page)
    for spec in (*data["panels"], data["curves_spec"]):  # valid Vega-Lite (the page skips Altair's validation)
        alt.LayerChart.from_dict(spec, validate=True)
    rows = data["panels"][0]["datasets"]["cells"]
    x, y = plots.phase_axes(plots.as_results(faulty_results))
    for expected in plots.phase_table(faulty_results).to_dict("records"):
        shown = [r for r in rows if r["metric"] == "val_accuracy" and r["x"] == value_text(expected[x]) and r["y"] == value_text(expected[y])]
        assert len(shown) == 1, expected
        assert shown[0]["tooltip_n"] == expected["n"] and shown[0]["status"] == expected["cell_status"]
        if expected["n"]:
            assert shown[0]["mean"] == pytest.approx(expected["mean"], rel=1e-12)
    assert {r["metric"] for r in rows} == {"val_accuracy", "best_val_accuracy", "train_accuracy", "val_accuracy_gain"}


@pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing()))
def test_hovering_and_clicking_a_cell_in_chromium(report, faulty_results, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import Select, WebDriverWait

    summary = plots.as_results(faulty_results).summary
    partly_failed = summary[(summary[LR] == 0.5) & (summary["amplitude"] == 1)]
    completed = partly_failed[partly_failed["status"] == "completed"]
    assert len(completed) == 1 and len(partly_failed) == 2  # the fixture's injected fault on seed 1
    with browser.chromium() as driver:
        driver.get(report.as_uri())
        browser.wait_until_ready(driver)
        x, y = plots.phase_axes(plots.as_results(faulty_results))
        at = lambda lr, amplitude: "0|" + "|".join(value_text({LR: lr, "amplitude": amplitude}[axis]) for axis in (x, y))
        cell = lambda key: driver.find_element("css selector", f"#panel-0 path[aria-label='{key}']")

        def hover(key: str) -> str:
            ActionChains(driver).move_to_element(cell(key)).perform()
            tip = driver.find_element("id", "vg-tooltip-element")
            WebDriverWait(driver, 10).until(lambda d: f"{LR} " in tip.text and tip.is_displayed())
            time.sleep(0.2)
            return tip.text

        text = hover(at(0.5, 1))
        assert f"mean {completed['val_accuracy'].iloc[0]:.4f}" in text and "n (completed seeds) 1" in text
        assert "seed 1 failed" in text and "95% CI –" in text  # one seed: no interval
        driver.save_screenshot(str(tmp_path / "hovered.png"))
        failed = hover(at(0.5, 10))
        assert "mean –" in failed and "seed 0 failed" in failed and "seed 1 failed" in failed
        assert "not run yet" in driver.find_element("css selector", "#panel-0").text  # A = 30, added to the grid later

        ActionChains(driver).move_to_element(cell(at(0.5, 1))).click().perform()
        WebDriverWait(driver, 10).until(lambda d: d.find_element("id", "detail").is_displayed())
        trials = [row.text.split()[0] for row in driver.find_elements("css selector", "#trials tr.trial")]
        assert sorted(trials) == sorted(partly_failed["trial_id"])
        curves = plots.as_results(faulty_results).curves
        drawn = {(t, c) for t in partly_failed["trial_id"] for c in ("val_accuracy", "train_accuracy")
                 if c in curves and curves.loc[curves["trial_id"] == t, c].notna().any()}
        WebDriverWait(driver, 10).until(
            lambda d: len(d.find_elements("css selector", "#curves path[aria-roledescription='line mark']")) == len(drawn))
        assert drawn and "stop_oscillation_epoch" in driver.find_element("id", "config").text
        driver.save_screenshot(str(tmp_path / "clicked.png"))

        Select(driver.find_element("id", "metric")).select_by_value("val_accuracy_gain")
        WebDriverWait(driver, 10).until(lambda d: "gain" in d.find_element("id", "shown").text)
        labels = lambda: {t.get_attribute("aria-label"): t.text for t in driver.find_elements("css selector", "#panel-0 text[aria-label]")}
        WebDriverWait(driver, 10).until(lambda d: labels().get(at(0.5, 1)) == "+0.000")  # A = 1 is the gain's baseline


def test_the_report_is_live_while_a_sweep_runs_and_plot_watch_follows_it(tmp_path):
    """One point holds (a real fault) while the others finish: the page is there and says so,
    reloading itself; `plot --watch` follows the run and draws every figure once it ends."""
    grid = write_grid(tmp_path, name="live", epochs=2000)
    grid.write_text(grid.read_text().replace("  seed: [0, 1, 2]", "  loss.period: [200, 400]\n  seed: [0, 1]"))
    directory = tmp_path / "results" / "live"
    index = directory / "figures" / "index.html"
    release = tmp_path / "release"
    held = trial_id_at(grid, **{"loss.amplitude": 10.0, "loss.period": 400.0, "seed": 0})
    driver = Driver(["run", str(grid), "--out", str(tmp_path / "results"), "--format", "png"], env=holding(release, where={"trial_id": held}))
    watcher = None
    try:
        driver.wait_until(lambda: index.exists() and f"running: {POINTS - 1} of {POINTS} points finished" in index.read_text(),
                          what="a live page with every point but the held one")
        page = index.read_text()
        assert "http-equiv='refresh'" in page and "Figures for papers" not in page
        shown = {t["trial_id"] for cell in report_data(page)["cells"].values() for t in cell["trials"]}
        assert len(shown) == POINTS - 1 and held not in shown
        watcher = subprocess.Popen([sys.executable, "-m", "tiltsweep", "plot", str(directory), "--watch"], stdout=subprocess.PIPE, text=True)
        assert watcher.stdout.readline().startswith(f"watching {directory}")
        release.touch()
        assert driver.wait(timeout=240) == 0
        out, _ = watcher.communicate(timeout=120)
        assert watcher.returncode == 0 and "figures:" in out, out
    finally:
        release.touch()
        driver.kill() if driver.process.poll() is None else driver.cleanup()
        if watcher and watcher.poll() is None:
            watcher.kill()
    page = index.read_text()
    assert "http-equiv='refresh'" not in page and f"{POINTS} of {POINTS} points finished" in page and "Figures for papers" in page
    assert len({t["trial_id"] for cell in report_data(page)["cells"].values() for t in cell["trials"]}) == POINTS
