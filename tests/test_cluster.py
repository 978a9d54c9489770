"""tiltsweep against a real Ray cluster started with `ray start` on this machine."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pandas as pd
import psutil
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
    assert "3/3 completed" in follow.stdout  # 2 x 2 cells: A = 1 is one training at both periods
    summary = pd.read_parquet(out / "quickstart-smoke" / "summary.parquet")
    assert len(summary) == 3 and set(summary["status"]) == {"completed"}


def gcs_address(tree) -> Optional[str]:
    """IP:port of the GCS server among a driver's processes: the node's address from its command
    line, the port it listens on (on every interface) from the system."""
    for process in tree.remember():
        try:
            line = " ".join(process.cmdline())
            ip = re.search(r"--node[-_]ip[-_]address=([\d.]+)", line)
            ports = [c.laddr.port for c in process.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            continue
        if "gcs_server" in line and ip and ports:
            return f"{ip.group(1)}:{ports[0]}"
    return None


def connects(address: str, token: str) -> subprocess.CompletedProcess:
    code = f"import ray; ray.init(address={address!r}, logging_level='ERROR'); print('connected', ray.cluster_resources().get('CPU'))"
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_the_local_default_runs_on_a_ray_of_its_own_that_admits_no_one_without_its_token(tmp_path):
    """A Ray cluster already runs on this machine, and RAY_ADDRESS names it (what a bare
    ray.init() would join): `tiltsweep run` without --address trains on a Ray of its own. While it
    runs, a client at this machine's network address is refused by that Ray without the token and
    connects with it (so the refusal is the token's doing). The driver runs as on a fresh machine,
    with a home of its own and no token in its environment: its Ray writes the token file, which
    is then its owner's alone."""
    from sweep_helpers import Driver, checkpoint_epochs, holding, started_by, write_grid

    cluster = LocalCluster(head_cpus=2)
    release = tmp_path / "release"
    directory = tmp_path / "out" / "own-ray"
    try:
        grid = write_grid(tmp_path, name="own-ray", amplitudes="[10]", epochs=2000)
        home = tmp_path / "home"
        fresh = {name: value for name, value in os.environ.items() if name not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
        env = holding(release, env={**fresh, "HOME": str(home), "RAY_ADDRESS": cluster.address})
        driver = Driver(["run", str(grid), "--out", str(tmp_path / "out"), "--no-plot"], env=env)
        try:
            driver.wait_until(lambda: checkpoint_epochs(directory), what="a point held after its checkpoint")
            address = gcs_address(driver.tree)
            maps = Path(f"/proc/{driver.process.pid}/maps").read_text()
            assert "jaxlib" not in maps and "libtpu" not in maps  # the driver trains nothing: JAX loads in the workers only
            token_file = home / ".ray" / "auth_token"
            assert token_file.stat().st_mode & 0o077 == 0
            if not address.startswith("127."):  # else this machine has no other address to knock at
                token = token_file.read_text().strip()
                refused = connects(address, "0" * len(token))
                assert refused.returncode != 0 and "connected" not in refused.stdout
                assert "auth" in (refused.stderr + refused.stdout).lower(), refused.stderr[-2000:]
                admitted = connects(address, token)
                assert admitted.returncode == 0 and "connected" in admitted.stdout, admitted.stderr[-2000:]
            release.touch()
            code = driver.wait(timeout=300)
            output = driver.output()
        finally:
            driver.kill() if driver.process.poll() is None else driver.cleanup()
        assert code == 0 and "to run on local Ray" in output, output
        workers = set(started_by(directory).values())
        assert len(workers) >= 1 and workers <= set(driver.tree.known)  # the driver's own Ray's workers
        assert not workers & {process.pid for process in cluster.nodes[0].tree.remember()}
    finally:
        cluster.shutdown()


def test_a_sweep_that_waits_for_resources_says_so(tmp_path):
    """A one-CPU cluster busy with one sweep (its points hold after their checkpoint at epoch 1000):
    a second sweep's trials fit a node but cannot start, and its progress line says what they
    wait for; once the first sweep goes on, both finish."""
    from sweep_helpers import Driver, checkpoint_epochs, holding, write_grid

    release = tmp_path / "release"
    cluster = LocalCluster(head_cpus=1, env=holding(release, env={}))  # a cluster's workers take faults from its nodes
    try:
        first = Driver(["run", str(write_grid(tmp_path, name="first", amplitudes="[10]", epochs=2000)), "--address", cluster.address,
                        "--out", str(tmp_path / "out"), "--no-plot"], env=cluster.env)
        first.wait_until(lambda: checkpoint_epochs(tmp_path / "out" / "first"), what="the first sweep's held point")
        second = Driver(["run", str(write_grid(tmp_path, name="second", amplitudes="[10]", epochs=1000)), "--address", cluster.address,
                         "--out", str(tmp_path / "out"), "--no-plot"], env=cluster.env)
        second.wait_until(lambda: (tmp_path / "out" / "second" / "sweep.json").exists(), what="the second sweep to start")
        time.sleep(13)  # longer than the 10 s a sweep waits before saying so
        release.touch()
        assert first.wait(timeout=400) == 0, first.output()
        assert second.wait(timeout=400) == 0
        output = second.output()
    finally:
        for driver in ("first", "second"):
            if driver in locals():
                locals()[driver].kill()
        cluster.shutdown()
    assert "waiting for resources: a trial asks for 1 CPU; free now: 0 CPU" in output, output
