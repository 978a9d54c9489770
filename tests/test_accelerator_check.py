"""The accelerator check (benchmarks/accelerator.py) runs whole on this CPU in its quick form, so
that it is ready, not rotten, when a GPU or TPU is there to run it; and it keeps what it measured
when a part fails, hangs or finds the budget spent (a lent device machine's time is short)."""

import json
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def accelerator() -> dict:
    """benchmarks/accelerator.py's names, as `python benchmarks/accelerator.py` would import them."""
    return runpy.run_path(str(ROOT / "benchmarks" / "accelerator.py"), run_name="imported")


def test_a_part_that_fails_or_comes_after_the_budget_is_recorded_and_the_json_is_written_after_each(accelerator, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_RESULTS", str(tmp_path))
    written = tmp_path / "check.json"
    report: dict = {}
    check = accelerator["Check"]("check", report, budget=60)
    check.part("first", lambda: {"value": 1})
    assert json.loads(written.read_text())["first"] == {"value": 1}  # on disk before the next part starts
    check.part("broken", lambda: 1 / 0)
    check.part("after", lambda: [2])
    assert check.limit(5) == 5 and 0 < check.limit(600) <= 60  # a part's limit: its own, or the budget left
    check.deadline = time.perf_counter() - 1
    assert check.limit(5) == 1
    check.part("late", lambda: pytest.fail("a part after the deadline must not run"))
    saved = json.loads(written.read_text())
    assert {key: part["status"] for key, part in saved["parts"].items()} == {"first": "done", "broken": "error", "after": "done", "late": "skipped"}
    assert "ZeroDivisionError" in saved["parts"]["broken"]["error"] and "broken" not in saved and saved["after"] == [2]


def test_the_diagram_runs_again_in_the_fastest_layout_on_a_gpu_only_where_auto_took_another(accelerator):
    try_layout = accelerator["layout_to_try"]
    found = {"faster": "elementwise", "auto": "feature_major"}
    assert try_layout("gpu", found) == ("elementwise", "")
    assert try_layout("gpu", {**found, "faster": "feature_major"})[0] is None
    assert try_layout("gpu", None) == (None, "no layouts measured")
    assert try_layout("cpu", found)[0] is None and try_layout("tpu", found)[0] is None


def test_a_command_past_its_time_limit_is_stopped_with_its_children(accelerator, tmp_path):
    marker = tmp_path / "child.pid"
    code = f"import subprocess, sys, time; child = subprocess.Popen(['sleep', '60']); open({str(marker)!r}, 'w').write(str(child.pid)); time.sleep(60)"
    started = time.perf_counter()
    done = accelerator["run_command"]([sys.executable, "-c", code], timeout=8)  # time for Python to start on a loaded machine
    assert done["timed_out"] and done["exit"] != 0 and time.perf_counter() - started < 30
    child = int(marker.read_text())
    time.sleep(0.5)
    try:
        assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]  # gone (or a zombie awaiting its reaper)
    except AssertionError:
        os.kill(child, signal.SIGKILL)  # still running: not left behind
        raise


def test_the_profile_counts_each_operation_of_a_traced_loop_once_a_step(tmp_path):
    """A real trace of a 40-step jitted loop (JAX's profiler on this CPU): its body's operations
    run once a step, and the loop around them is not one of them."""
    import gzip

    import jax
    import jax.numpy as jnp

    profile = runpy.run_path(str(ROOT / "benchmarks" / "device_profile.py"), run_name="imported")
    loop = jax.jit(lambda x: jax.lax.fori_loop(0, 40, lambda i, y: jnp.tanh(y @ y.T) * jnp.exp(-y), x))
    x = jax.random.normal(jax.random.PRNGKey(0), (64, 64))
    loop(x).block_until_ready()
    _, trace = profile["traced"](lambda: loop(x).block_until_ready(), tmp_path)
    found = profile["operations"](json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"], steps=40)
    assert found["source"] == "host" and found["busy_us_per_step"] and all(row["hlo_op"] for row in found["top"])
    once_a_step = [row["name"] for row in found["top"] if row["calls_per_step"] == 1]
    assert len(once_a_step) >= 2, found["top"]  # the product and the elementwise fusion, 40 calls each
    assert not any(row["name"].startswith("while") for row in found["top"]), found["top"]  # it holds the body's operations


@pytest.mark.slow
def test_the_accelerator_check_runs_every_part_and_writes_one_json(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "accelerator.py"), "--quick"], capture_output=True, text=True,
                          env={**os.environ, "BENCHMARK_RESULTS": str(tmp_path)}, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    (written,) = tmp_path.glob("accelerator-*-quick.json")
    report = json.loads(written.read_text())
    assert {key: part["status"] for key, part in report["parts"].items()} == dict.fromkeys(
        ["blocks", "layouts", "block_with_hessian", "profile", "cnns", "tests", "diagram"], "done") | dict.fromkeys(["diagram_fastest_layout", "diagram_warmup_off"], "skipped")
    assert [row["points"] for row in report["blocks"]] == [1, 8, 32] and all(row["point_steps_per_second"] > 0 for row in report["blocks"])
    assert report["block_with_hessian"]["points"] == 32 and sorted(report["layouts"]["us_per_step"]) == ["batch_major", "elementwise", "feature_major"]
    assert report["layouts"]["auto"] == "feature_major" and report["diagram"]["layout"] == "auto"
    assert report["profile"]["points"] == 32 and any(row["calls_per_step"] == 1 for row in report["profile"]["top"])  # the step's kernels
    assert (tmp_path / written.name.replace(".json", "-profile-trace.json.gz")).stat().st_size > 0  # its own process wrote it
    assert report["diagram"]["exit"] == 0 and report["diagram"]["cells"] == 8 and "6/6 completed" in report["diagram"]["last_line"]  # A = 1 is one training at both periods
    assert "no warm-up either" in report["parts"]["diagram_warmup_off"]["why"]  # auto warms GPU trials only: it would be the same run
    assert "GPU only" in report["parts"]["diagram_fastest_layout"]["why"]
    assert sorted(report["cnns"]) == ["myrtle5, 8 channels, block of 4, bfloat16", "myrtle5, 8 channels, block of 4, float32",
                                      "wide_resnet 10-1, bfloat16", "wide_resnet 10-1, float32"]
    assert report["cnns"]["myrtle5, 8 channels, block of 4, float32"]["points"] == 4
    assert all(row["images_per_second"] > 0 for row in report["cnns"].values())
    assert report["tests"]["exit"] == 0 and " passed" in report["tests"]["summary"]
    printed = done.stdout[done.stdout.index("| part | cpu, quick"):]  # the README's table, last
    assert "| block of 1 / 8 / 32 points |" in printed and "| diagram_warmup_off | skipped: " in printed and "| tests | " in printed
