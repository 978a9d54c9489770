"""tiltsweep against a real Ray cluster started with `ray start` on this machine."""

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ray_cluster import RAY, LocalCluster

pytestmark = pytest.mark.slow
GRIDS = Path(__file__).resolve().parent.parent / "grids"


@pytest.fixture
def job_cluster():
    cluster = LocalCluster(head_cpus=2, dashboard=True)
    try:
        yield cluster
    finally:
        cluster.shutdown()


def test_submit_runs_the_sweep_as_a_ray_job(job_cluster, tmp_path):
    out = tmp_path / "shared-results"
    submitted = subprocess.run(
        [sys.executable, "-m", "tiltsweep", "submit", str(GRIDS / "quickstart.yaml"), "--smoke",
         "--address", job_cluster.dashboard_url, "--out", str(out)],
        env=job_cluster.env, capture_output=True, text=True, timeout=120,
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = re.search(r"as Ray job (\S+)", submitted.stdout).group(1)
    assert f"ray job logs --follow --address {job_cluster.dashboard_url} {job_id}" in submitted.stdout

    # Follow it as the printed hint says; this returns when the job ends.
    follow = subprocess.run([RAY, "job", "logs", "--follow", "--address", job_cluster.dashboard_url, job_id],
                            env=job_cluster.env, capture_output=True, text=True, timeout=300)
    status = subprocess.run([RAY, "job", "status", "--address", job_cluster.dashboard_url, job_id],
                            env=job_cluster.env, capture_output=True, text=True, timeout=60)
    assert f"Job '{job_id}' succeeded" in status.stdout, status.stdout + follow.stdout
    assert "4/4 completed" in follow.stdout
    summary = pd.read_parquet(out / "quickstart-smoke" / "summary.parquet")
    assert len(summary) == 4 and set(summary["status"]) == {"completed"}


def test_the_local_default_starts_its_own_ray_beside_another_one(tmp_path):
    """A Ray cluster already runs on this machine, and RAY_ADDRESS names it (what a bare
    ray.init() would join): `tiltsweep run` without --address trains on a Ray of its own."""
    from sweep_helpers import Driver, started_by, write_grid

    cluster = LocalCluster(head_cpus=2)
    try:
        grid = write_grid(tmp_path, name="own-ray", epochs=1000)
        driver = Driver(["run", str(grid), "--out", str(tmp_path / "out"), "--no-plot"], env={**cluster.env, "RAY_ADDRESS": cluster.address})
        assert driver.wait(timeout=300) == 0, driver.output()
        assert "to run on local Ray" in driver.output()
        workers = set(started_by(tmp_path / "out" / "own-ray").values())
        assert len(workers) >= 1 and workers <= set(driver.tree.known)  # the driver's own Ray's workers
        assert not workers & {process.pid for process in cluster.nodes[0].tree.remember()}
    finally:
        cluster.shutdown()
