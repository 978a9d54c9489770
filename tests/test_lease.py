"""The run lease on object storage (store.lock.Lease) against a real S3-compatible server (moto's,
a process of its own, private to each test so that a test may pause it), with real signals: a run
paused past its lease loses it to another and stops with exit 3; a holder whose store stops
answering counts itself lost before another run can take the lease over; a write whose answer was
lost is told apart from a take-over; a store that cannot be reached is one line, exit 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from object_store import S3Server
from sweep_helpers import assert_each_point_once, held_run, write_grid
from tiltsweep.sweep.commands.cli import main
from tiltsweep.sweep.store import ResultsDir
from tiltsweep.sweep.store.files import Unreachable

LEASE = 12  # seconds: renewed every 4 s, lost after 8 s unrenewed, taken over after 12 s
POINTS = 6  # write_grid's


@pytest.fixture
def server(monkeypatch, tmp_path):
    """A moto server of this test's own, its variables in the test's environment."""
    store = S3Server()
    for name, value in {**store.env, "XDG_CACHE_HOME": str(tmp_path / "cache"), "TILTSWEEP_LEASE_SECONDS": str(LEASE)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    yield store
    os.kill(store.process.pid, signal.SIGCONT)
    store.stop()


def wait_for(condition, timeout: float, what: str) -> float:
    """Seconds until `condition()` holds."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        time.sleep(0.1)
    return time.monotonic() - start


def test_a_holder_whose_store_stops_answering_counts_itself_lost_before_anyone_can_take_over(server):
    directory = f"s3://{server.bucket()}/results/sweep"
    first = ResultsDir(directory).lock()
    first.acquire()
    try:
        os.kill(server.process.pid, signal.SIGSTOP)  # every request now hangs until its timeout
        waited = wait_for(lambda: first.lost is not None, timeout=LEASE, what="the holder to count itself lost")
        assert "could not be renewed" in first.lost
        # 2/3 of the lease after its last renewal, which came at most 1/3 before the pause
        assert LEASE / 3 - 1 < waited < LEASE * 2 / 3 + 1.5, waited  # margins for a loaded machine's thread wake-ups
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        first.release()  # the lease is still its own (no one took it over): deleted
    assert ResultsDir(directory).lock().holder() is None
    second = ResultsDir(directory).lock()
    second.acquire()
    try:
        assert second.owner()["token"] == second.claim["token"] != first.claim["token"]
    finally:
        second.release()  # its renewing thread stops


def test_a_renewal_whose_answer_was_lost_is_told_apart_from_a_take_over(server):
    """The store took this run's last write, but its answer never came back (the run still holds
    the version before it): the next write's condition fails, and the lease read back is the run's."""
    directory = f"s3://{server.bucket()}/results/sweep"
    lease = ResultsDir(directory).lock()
    lease.acquire()
    try:
        lease.version = '"' + "0" * 32 + '"'  # not the lease's version any more
        lease.renew()
        assert lease.lost is None and lease.version == lease.store.read()[1]
        intruder = ResultsDir(directory).lock()
        intruder.claim = {"pid": 1, "host": "elsewhere", "token": "theirs"}
        intruder.write(intruder.store.replace, lease.version)  # another run's write, on the current version
        lease.renew()
        assert "was taken over (held now by pid 1 on elsewhere" in lease.lost
    finally:
        lease.release()


def test_a_store_out_of_reach_is_one_line_and_exit_2(server, capsys):
    directory = f"s3://no-such-bucket-{os.getpid()}/results/sweep"
    with pytest.raises(Unreachable, match="NoSuchBucket"):
        ResultsDir(directory).lock().holder()
    assert main(["status", directory]) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "no-such-bucket" in message, message


@pytest.mark.slow
def test_a_run_paused_past_its_lease_loses_it_to_another_and_stops(server, tmp_path, tally):
    """The driver SIGSTOPped mid-sweep (its points holding after their checkpoints) until another
    run has taken its lease over; woken, it stops with exit 3 saying so, and a resume after the
    other run finishes repeats nothing finished."""
    directory = f"s3://{server.bucket()}/results/ray-sweep"
    first, _, release = held_run(tmp_path, directory, "--no-plot")
    other = ResultsDir(directory).lock()
    try:
        os.kill(first.process.pid, signal.SIGSTOP)
        wait_for(lambda: other.holder() is None, timeout=LEASE, what="the paused run's lease to count as unrenewed")
        other.acquire()  # waits for it to run out, then takes it over
        os.kill(first.process.pid, signal.SIGCONT)
        release.touch()
        assert first.wait(timeout=120) == 3
        output = first.process.stdout.read()
        assert "this run lost its lock" in output and "tiltsweep resume" in output, output
    finally:
        other.release()  # stops its renewing thread, and lets the resume below take the lock
        os.kill(first.process.pid, signal.SIGCONT) if first.process.poll() is None else None
        first.kill() if first.process.poll() is None else first.cleanup()
    assert main(["resume", directory, "--no-plot"]) == 0
    assert_each_point_once(directory, POINTS, evaluations=5)
    tally.sweep("driver paused past its lease on S3, taken over", directory, injected=1)


@pytest.mark.slow
def test_a_bucket_gone_mid_sweep_stops_the_sweep_saying_how_to_resume(server, tmp_path, monkeypatch):
    """pyarrow's errors for a missing bucket carry no errno; they still count as the store's
    trouble, so the sweep stops (exit 3) instead of spending every pack's retries on it."""
    import boto3

    monkeypatch.setenv("TILTSWEEP_LEASE_SECONDS", "60")  # the records' failure, not the lease's, is what stops it

    bucket = server.bucket()
    directory = f"s3://{bucket}/results/ray-sweep"
    driver, _, release = held_run(tmp_path, directory, "--no-plot")
    try:
        client = boto3.client("s3")
        for attempt in range(10):  # the run's lease may be renewed between the last delete and the bucket's
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for stored in page.get("Contents", []):
                    client.delete_object(Bucket=bucket, Key=stored["Key"])
            try:
                client.delete_bucket(Bucket=bucket)
                break
            except client.exceptions.ClientError:
                assert attempt < 9
        release.touch()
        assert driver.wait(timeout=180) == 3
        output = driver.process.stdout.read()
        last = output.strip().splitlines()[-1]
        assert last.startswith(f"tiltsweep: {directory}: stopped taking writes") and "NO_SUCH_BUCKET" in last, output
        assert last.endswith(f"`tiltsweep resume {directory}`"), last
    finally:
        driver.kill() if driver.process.poll() is None else driver.cleanup()


@pytest.mark.parametrize("module, uri, extra", [("boto3", "s3://a-bucket/results", "s3"), ("google.cloud.storage", "gs://a-bucket/results", "gcs")])
def test_a_results_directory_whose_lease_client_is_missing_is_refused_naming_the_extra(server, tmp_path, module, uri, extra):
    """In a Python where the store's client cannot be imported (its module blocked in sys.modules); the
    S3 server gives pyarrow an endpoint and a region."""
    grid = write_grid(tmp_path, epochs=10)
    blocked = f"import sys; sys.modules[{module!r}] = None; from tiltsweep.sweep.commands.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", blocked, "run", str(grid), "--out", uri, "--no-plot"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and f"pip install 'tiltsweep[{extra}]'" in done.stderr and uri in done.stderr, done.stderr
