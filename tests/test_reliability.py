"""Faults a long sweep meets, injected for real: a lost cluster node, a driver SIGKILLed at
different moments, worker processes killed, corrupt files, two runs at once, divergence.
Every test stops the processes it started, by their ids."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from ray_cluster import LocalCluster
from tiltsweep.sweep.commands.cli import main
from tiltsweep.sweep.grid import load_grid
from tiltsweep.sweep.run.packs import plan_packs
from tiltsweep.sweep.store import ResultsDir
from sweep_helpers import (
    Driver, assert_each_point_once, checkpoint_epochs, holding, lose_the_node_mid_sweep, records, started_by, status_json, trial_id_at, write_grid,
)

pytestmark = pytest.mark.slow
POINTS = 6
KILL_BEFORE_RENAME = Path(__file__).resolve().parent / "kill_before_rename.py"


def test_sweep_survives_losing_a_node_of_a_two_node_cluster(tmp_path, tally):
    # Every point holds after its checkpoint at 1000 until `release` exists: the test does not
    # race the sweep for a trial between two checkpoints, on a machine of any speed.
    release = tmp_path / "release"
    cluster = LocalCluster(head_cpus=1, env=holding(release, env={}))
    try:
        second = cluster.add_node(cpus=2)
        cluster.wait_for_cpus(3)
        out = tmp_path / "shared"
        grid = write_grid(tmp_path, name="two-nodes", epochs=2000)
        driver = Driver(["run", str(grid), "--address", cluster.address, "--out", str(out), "--no-plot"], env=cluster.env)
        directory = out / "two-nodes"
        try:
            lost = lose_the_node_mid_sweep(driver, second, directory, release)
        finally:
            driver.kill() if driver.process.poll() is None else None
    finally:
        cluster.shutdown()
    assert_each_point_once(directory, POINTS, evaluations=5)
    final = records(directory)
    assert final[lost]["attempts"] >= 2 and final[lost]["resumed_from_epoch"] == 1000  # continued on the head node
    tally.sweep("two-node cluster, second node killed", directory, injected=1)


def snapshot_after_kill(directory):
    """What a killed sweep left: finished records and the checkpoint epoch of each other point."""
    finished = records(directory)
    return finished, checkpoint_epochs(directory, exclude=finished)


@pytest.mark.parametrize("moment", ["before the first result", "mid-way", "while writing results"])
def test_driver_killed_at_any_moment_loses_and_repeats_nothing(tmp_path, moment, tally):
    grid = write_grid(tmp_path, name="killed", epochs=2000)
    out = tmp_path / "results"
    directory = out / "killed"
    release = tmp_path / "release"  # never made: the killed driver's held points stay held
    command = None
    if moment == "before the first result":  # every point holds after its first checkpoint
        env = holding(release)
    elif moment == "mid-way":  # one point holds after its first checkpoint, the others finish
        held = trial_id_at(grid, **{"loss.amplitude": 1.0, "seed": 1})
        env = holding(release, where={"trial_id": held})
    else:
        # The driver kills itself just before renaming its 3rd file into summary.parquet/ (a
        # pack's rows, rewritten as its points are filed): two filings were whole before it.
        env, command = os.environ.copy(), [sys.executable, str(KILL_BEFORE_RENAME), "summary.parquet", "3"]
    driver = Driver(["run", str(grid), "--out", str(out), "--no-plot"], env=env, command=command)
    try:
        if moment == "before the first result":
            driver.wait_until(lambda: checkpoint_epochs(directory), what="a checkpoint")
            driver.kill()
        elif moment == "mid-way":
            driver.wait_until(lambda: records(directory) and held in checkpoint_epochs(directory), what="a result and the held point's checkpoint")
            driver.kill()
        else:
            assert driver.wait(timeout=240) == -9  # SIGKILL, by its own hand
    finally:
        driver.kill() if driver.process.poll() is None else driver.cleanup()

    finished, partial = snapshot_after_kill(directory)
    state = status_json(directory)
    assert state["completed"] == len(finished) and state["partial"] == len(partial)
    assert state["completed"] + state["partial"] + state["pending"] == POINTS
    if moment == "before the first result":
        assert not finished and partial
    if moment == "mid-way":
        assert finished and partial
    if moment == "while writing results":
        assert list(directory.glob("summary.parquet/.*.tmp"))  # the write it was killed in
        assert len(finished) >= 2  # two records were written before their filing was cut short

    assert main(["resume", str(directory), "--no-plot"]) == 0
    assert_each_point_once(directory, POINTS, evaluations=5)
    final = records(directory)
    for trial_id, record in finished.items():
        assert final[trial_id]["finished_at"] == record["finished_at"]  # not run again
    for trial_id, epoch in partial.items():
        assert final[trial_id]["resumed_from_epoch"] == epoch > 0  # continued, not restarted
    assert not list(directory.rglob(".*.tmp"))
    tally.sweep(f"driver SIGKILLed {moment}", directory, injected=1)


def running(processes: list) -> list:
    """Those of `processes` still running (a zombie has ended)."""
    def alive(process) -> bool:
        try:
            return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    return [process for process in processes if alive(process)]


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_sweep_cleanly_and_resume_goes_on(tmp_path, tally, signum, code):
    """What SLURM, Kubernetes and `docker stop` send (SIGTERM), and Ctrl-C (SIGINT), while every
    point holds after its checkpoint at epoch 1000: the driver and its Ray stop within seconds,
    say how far it got and how to go on, and leave no file half-written."""
    grid = write_grid(tmp_path, name="signalled", epochs=2000)
    out = tmp_path / "results"
    directory = out / "signalled"
    driver = Driver(["run", str(grid), "--out", str(out), "--no-plot"], env=holding(tmp_path / "never"))
    try:
        driver.wait_until(lambda: len(checkpoint_epochs(directory)) == 2, what="two held points' checkpoints")
        partial = checkpoint_epochs(directory)
        started = time.monotonic()
        driver.process.send_signal(signum)
        assert driver.process.wait(timeout=60) == code
        stopped_in = time.monotonic() - started
        output = driver.output()
        alive = running(driver.tree.remember())
        while alive and time.monotonic() - started < 15:  # Ray's processes may end a moment after the driver
            time.sleep(0.1)
            alive = running(alive)
    finally:
        driver.kill() if driver.process.poll() is None else driver.cleanup()
    assert stopped_in < 15 and not alive, (stopped_in, alive)  # the driver, its Ray and its workers, within 15 s
    last = output.strip().splitlines()[-1]
    assert last == (f"tiltsweep: stopped by {signal.Signals(signum).name}: 0/{POINTS} points finished, the others keep their "
                    f"latest checkpoint; `tiltsweep resume {directory}` goes on"), output
    assert "SIGTERM received" not in output and "Traceback" not in output  # no native dump, no trace
    assert not list(directory.rglob(".*.tmp"))
    if signum == signal.SIGINT:
        return  # what follows is the same for both signals

    assert main(["resume", str(directory), "--no-plot"]) == 0
    assert_each_point_once(directory, POINTS, evaluations=5)
    final = records(directory)
    for trial_id, epoch in partial.items():
        assert final[trial_id]["resumed_from_epoch"] == epoch == 1000  # continued, not restarted
    tally.sweep(f"driver stopped by {signal.Signals(signum).name}", directory, injected=1)


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of this test's own, unmounted afterwards (mounting needs root: skipped without)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or mounted.returncode}): needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk is full (ENOSPC), in ever smaller pieces."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as handle:
        for size in (2**20, 2**12, 1):
            try:
                while True:
                    handle.write(b"\0" * size)
            except OSError:
                pass
    return filler


@pytest.mark.parametrize("trouble", ["full", "read-only"])
def test_a_results_directory_that_stops_taking_writes_stops_the_sweep_and_resume_finishes(tmp_path, small_disk, tally, trouble):
    """The results directory's disk fills up (ENOSPC) or turns read-only (EROFS) while three points
    have finished and two more hold after their checkpoints: the sweep stops with one line naming
    the directory and how to go on, nothing finished is lost or damaged, and once the disk is
    writable again `resume` finishes the sweep."""
    grid = write_grid(tmp_path, name="disk", epochs=2000)
    out = small_disk / "results"
    directory = out / "disk"
    release = tmp_path / "release"
    driver = Driver(["run", str(grid), "--out", str(out), "--no-plot"], env=holding(release, where={"amplitude": 10}))
    try:
        driver.wait_until(lambda: len(records(directory)) == 3 and len(checkpoint_epochs(directory, exclude=records(directory))) == 2,
                          what="three finished points and two held after their checkpoints")
        finished = records(directory)
        if trouble == "full":
            filler = fill(small_disk)
        else:  # a read-only mount over it (remounting the disk itself is refused while the run lock's file is open)
            subprocess.run(["mount", "--bind", str(small_disk), str(small_disk)], check=True, capture_output=True)
            subprocess.run(["mount", "-o", "remount,ro,bind", str(small_disk)], check=True, capture_output=True)
        release.touch()
        code = driver.wait(timeout=240)
        output = driver.output()
    finally:
        driver.kill() if driver.process.poll() is None else driver.cleanup()
    last = output.strip().splitlines()[-1]
    assert code == 3, output
    assert last.startswith(f"tiltsweep: {directory}: stopped taking writes (") and f"then `tiltsweep resume {directory}`" in last, output
    assert "Traceback" not in output

    if trouble == "full":
        filler.unlink()
    else:
        subprocess.run(["umount", str(small_disk)], check=True, capture_output=True)  # the writable disk again
    state = status_json(directory)
    assert state["unreadable"] == [] and state["completed"] >= 3
    assert main(["resume", str(directory), "--no-plot"]) == 0
    assert_each_point_once(directory, POINTS, evaluations=5)
    final = records(directory)
    for trial_id, record in finished.items():
        assert final[trial_id]["finished_at"] == record["finished_at"]  # kept, not run again
    tally.sweep(f"results directory {trouble} mid-sweep", directory, injected=1)


def test_worker_killed_from_outside_is_retried_from_its_checkpoint(tmp_path, tally):
    grid = write_grid(tmp_path, name="worker-killed", epochs=2000)
    out = tmp_path / "results"
    directory = out / "worker-killed"
    release = tmp_path / "release"
    trial_id = trial_id_at(grid, **{"loss.amplitude": 10.0, "seed": 0})
    driver = Driver(["run", str(grid), "--out", str(out), "--no-plot"], env=holding(release, where={"trial_id": trial_id}))
    try:
        driver.wait_until(lambda: trial_id in checkpoint_epochs(directory), what="the held point's checkpoint")
        worker = started_by(directory)[trial_id]
        assert worker in {p.pid for p in driver.tree.remember()}  # a Ray worker of this sweep
        os.kill(worker, 9)  # the worker process training that point, held after its checkpoint
        release.touch()
        assert driver.wait(timeout=300) == 0, driver.output()
    finally:
        driver.kill() if driver.process.poll() is None else None
    assert_each_point_once(directory, POINTS, evaluations=5)
    final = records(directory)
    assert final[trial_id]["attempts"] == 2 and final[trial_id]["resumed_from_epoch"] == 1000
    assert all(r["attempts"] == 1 for t, r in final.items() if t != trial_id)
    tally.sweep("worker process SIGKILLed from outside", directory, injected=1)


def test_worker_that_keeps_dying_is_marked_failed_after_its_retries(tmp_path, monkeypatch, capsys, tally):
    monkeypatch.setenv("TILTSWEEP_FAULTS", json.dumps([{"where": {"amplitude": 10, "seed": 2}, "epoch": 1000, "action": "kill", "times": 5}]))
    out = tmp_path / "results"
    assert main(["run", str(write_grid(tmp_path, retries=1)), "--out", str(out), "--no-plot"]) == 3
    directory = out / "ray-sweep"
    summary = pd.read_parquet(directory / "summary.parquet").set_index(["amplitude", "seed"])
    failed = summary.loc[(10.0, 2)]
    assert failed["status"] == "failed" and "died" in failed["error"].lower(), failed["error"]
    assert (summary.drop(index=[(10.0, 2)])["status"] == "completed").all()
    assert len(list((directory / ".faults").iterdir())) == 2  # the first attempt and one retry
    capsys.readouterr()
    main(["status", str(directory)])
    assert re.search(r"failed +1\n +\w{16}  amplitude=10.0, seed=2: the worker training it died", capsys.readouterr().out)
    tally.sweep("worker SIGKILLs itself on every attempt (retries: 1)", directory)


def test_a_point_that_kills_its_worker_keeps_no_point_of_its_pack_from_training(tmp_path, monkeypatch, capsys, tally):
    """Trials that take every CPU Ray finds run one at a time, so the first trial trains a pack
    of two points (sweep.run.packs). The first point kills its worker on every attempt: the retry
    trains the other point first, and only the killer is failed."""
    from ray._private.utils import get_num_cpus  # what a local Ray offers

    grid = write_grid(tmp_path, retries=1, cpu=get_num_cpus())
    first_pack = plan_packs(list(load_grid(grid).points), slots=1, retries=1, on_accelerator=False)[0]
    killer, mate = (point.trial_id for point in first_pack.points)
    monkeypatch.setenv("TILTSWEEP_FAULTS", json.dumps([{"where": {"trial_id": killer}, "epoch": 1000, "action": "kill", "times": 5}]))
    out = tmp_path / "results"
    assert main(["run", str(grid), "--out", str(out), "--no-plot"]) == 3
    final = records(out / "ray-sweep")
    assert final[killer]["status"] == "failed" and "died" in final[killer]["error"].lower(), final[killer]["error"]
    assert (final[mate]["status"], final[mate]["attempts"], final[mate]["resumed_from_epoch"]) == ("completed", 1, 0)
    assert len(final) == POINTS and all(r["status"] == "completed" for t, r in final.items() if t != killer)
    assert len(list((out / "ray-sweep" / ".faults").iterdir())) == 2  # the first attempt and one retry
    tally.sweep("a point SIGKILLs its worker in a pack of two (retries: 1)", out / "ray-sweep")


def corrupt(path, how: str) -> bytes:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncate" else b"\x00garbage" * 20)
    return path.read_bytes()


def test_corrupt_files_are_reported_moved_aside_and_redone(tmp_path, tally):
    out = tmp_path / "results"
    grid = write_grid(tmp_path, name="corrupt", epochs=2000)
    assert main(["run", str(grid), "--out", str(out), "--no-plot"]) == 0
    directory = out / "corrupt"
    results = ResultsDir(directory)
    before = records(directory)
    ids = sorted(before)
    bad_record, bad_checkpoint = ids[0], ids[1]
    pack = {trial_id: pack_id for trial_id, (pack_id, _) in results.records.all(on_corrupt=print).items()}
    assert len(set(pack.values())) == POINTS  # one point a pack here (2 slots, 6 points), so one bad file hits one point
    damaged = {
        f"summary.parquet/{pack[ids[3]]}.parquet": corrupt(directory / "summary.parquet" / f"{pack[ids[3]]}.parquet", "truncate"),
        f"curves.parquet/{pack[ids[2]]}.parquet": corrupt(directory / "curves.parquet" / f"{pack[ids[2]]}.parquet", "garbage"),
        f"records/{pack[bad_record]}.msgpack": corrupt(directory / "records" / f"{pack[bad_record]}.msgpack", "truncate"),
    }
    # A point interrupted at epoch 1000 whose checkpoint was then damaged.
    (directory / "records" / f"{pack[bad_checkpoint]}.msgpack").unlink()
    results.checkpoints.save(bad_checkpoint, 1000, b"a train state")
    checkpoint = results.checkpoints.newest(bad_checkpoint)
    damaged[checkpoint] = corrupt(directory / checkpoint, "garbage")

    state = status_json(directory)
    assert len(state["unreadable"]) == 4
    for name in damaged:
        assert any(name in problem for problem in state["unreadable"]), name

    assert main(["run", str(grid), "--out", str(out), "--no-plot"]) == 0
    moved = {entry["file"]: directory / entry["moved_to"] for entry in results.quarantined()}
    assert set(moved) == set(damaged)
    for name, data in damaged.items():
        assert moved[name].read_bytes() == data  # moved aside, never deleted
    assert_each_point_once(directory, POINTS, evaluations=5)
    after = records(directory)
    for trial_id in ids[2:]:
        assert after[trial_id]["finished_at"] == before[trial_id]["finished_at"]  # rebuilt, not re-run
    assert after[bad_record]["finished_at"] != before[bad_record]["finished_at"]  # re-run
    assert after[bad_checkpoint]["resumed_from_epoch"] == 0  # started over: its only checkpoint was bad
    assert status_json(directory)["unreadable"] == []
    tally.sweep("corrupt summary, curve, record and checkpoint", directory, injected=len(damaged))


def test_second_run_is_refused_and_a_killed_runs_lock_is_taken_over(tmp_path, capsys, tally):
    grid = write_grid(tmp_path, name="locked", epochs=2000)
    out = tmp_path / "results"
    directory = out / "locked"
    first = Driver(["run", str(grid), "--out", str(out), "--no-plot"], env=holding(tmp_path / "never"))  # runs until killed
    try:
        first.wait_until(lambda: (directory / ".lock.owner").exists(), what="the lock")
        capsys.readouterr()
        assert main(["run", str(grid), "--out", str(out), "--no-plot"]) == 2
        message = capsys.readouterr().err
        assert message.count("\n") == 1 and f"is in use by another tiltsweep run: pid {first.process.pid} on " in message
        first.kill()  # the operating system frees its lock
    finally:
        first.kill() if first.process.poll() is None else first.cleanup()
    assert json.loads((directory / ".lock.owner").read_text())["pid"] == first.process.pid  # left by the killed run
    assert main(["run", str(grid), "--out", str(out), "--no-plot"]) == 0
    assert not (directory / ".lock.owner").exists()  # the second run took the lock over and let it go
    assert_each_point_once(directory, POINTS, evaluations=5)
    tally.sweep("two runs at once, then the first SIGKILLed", directory, injected=2)


def test_diverged_points_are_recorded_and_not_retried(tmp_path, capsys, tally):
    grid = tmp_path / "diverge.yaml"
    grid.write_text(write_grid(tmp_path).read_text().replace("name: ray-sweep", "name: diverge")
                    .replace("loss: {amplitude: 1, period: 200}", "loss: {name: dynamical_mse, amplitude: 1, period: 200}")
                    .replace("amplitude: [1, 10]", "amplitude: [1, 1000]\n  optimizer.learning_rate: [0.5, 4.0]"))
    out = tmp_path / "results"
    assert main(["run", str(grid), "--out", str(out), "--no-plot"]) == 0  # diverged is a final status
    directory = out / "diverge"
    summary = pd.read_parquet(directory / "summary.parquet")
    diverged = summary[summary["status"] == "diverged"]
    assert set(diverged["optimizer.learning_rate"]) == {4.0} and len(diverged) == 6
    assert (diverged["attempts"] == 1).all() and diverged["error"].str.contains("non-finite").all()
    assert diverged["val_accuracy"].notna().all()  # its last finite evaluation
    capsys.readouterr()
    assert main(["run", str(grid), "--out", str(out), "--no-plot"]) == 0
    assert "12 already done, 0 to run" in capsys.readouterr().out
    tally.sweep("divergence (learning rate 4, squared error)", directory)
