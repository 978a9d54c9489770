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
