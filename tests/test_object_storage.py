"""Results on object storage: sweeps into a real S3-compatible server (moto's) and a GCS emulator,
each a process of their own on 127.0.0.1, reached through the stores' standard variables, with
real Ray, real kills and real clusters whose nodes share no directory."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import write_cifar10_dir
from object_store import GcsServer, S3Server
from ray_cluster import LocalCluster
from sweep_helpers import Driver, assert_each_point_once, checkpoint_epochs, held_run, holding, lose_the_node_mid_sweep, records, status_json, write_cifar_grid, write_grid
from tiltsweep.sweep.commands.cli import main
from tiltsweep.sweep.grid import load_grid
from tiltsweep.sweep.run.executor import payload_for
from tiltsweep.sweep.run.faults import InjectedFault
from tiltsweep.sweep.run.packs import Pack, pack_id
from tiltsweep.sweep.run.runner import results_dir_for
from tiltsweep.sweep.run.worker import run_pack
from tiltsweep.sweep.store import ResultsDir
from tiltsweep.sweep.store.files import ObjectFiles

POINTS = 6  # write_grid's: amplitude [1, 10] x seed [0, 1, 2]
LEASE = 15  # seconds: a killed run's lease runs out in the tests' time, a live one is renewed on a loaded machine


@pytest.fixture(scope="module")
def s3_server():
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch, tmp_path):
    """The S3 server's variables in this test's environment (and so its drivers' and Ray's)."""
    for name, value in {**s3_server.env, "XDG_CACHE_HOME": str(tmp_path / "cache"), "TILTSWEEP_LEASE_SECONDS": str(LEASE)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return s3_server


def uploaded(folder: Path, uri: str) -> str:
    """`folder`'s files copied to `uri` (pyarrow, as a user's tools would)."""
    import pyarrow.fs as pafs

    store, base = pafs.FileSystem.from_uri(uri)
    pafs.copy_files(str(folder), base, destination_filesystem=store)
    return uri


def test_a_place_tiltsweep_cannot_reach_is_refused_before_anything_runs(s3, tmp_path, capsys):
    grid = write_grid(tmp_path)
    for out, expected in [("hdfs://namenode/results", "tiltsweep cannot reach hdfs://"), ("s3:/bucket/results", "looks like a URI without its '//'"),
                          ("s3://", "names no bucket"), ("s3:///results", "names no bucket"),
                          ("s3://no-such-bucket/results", "no bucket 'no-such-bucket' there")]:
        assert main(["run", str(grid), "--out", out]) == 2
        message = capsys.readouterr().err
        assert message.count("\n") == 1 and expected in message, message
        assert main(["status", f"{out}/ray-sweep"]) == 2
        capsys.readouterr()
        if "no-such-bucket" not in out:  # what the text alone tells, submit refuses before it reaches the cluster
            assert main(["submit", str(grid), "--address", "http://127.0.0.1:9", "--out", out]) == 2
            message = capsys.readouterr().err
            assert message.count("\n") == 1 and f"--out {out}: {expected}" in message, message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ray-sweep.yaml"]  # no local `s3:` folder, nothing written


def test_a_local_copy_of_stored_data_is_made_once_and_verified(s3, tmp_path):
    from tiltsweep.sweep.store.files import download, files_at, local_copy

    bucket = s3.bucket()
    original = write_cifar10_dir(tmp_path / "cifar-10-batches-py", per_batch=4)
    data = uploaded(original, f"s3://{bucket}/cifar-10-batches-py")
    names = ["data_batch_1", "test_batch"]
    copy = local_copy(data, names)
    assert sorted(p.name for p in copy.iterdir() if not p.name.startswith(".")) == names
    assert (copy / "test_batch").read_bytes() == (original / "test_batch").read_bytes()
    made = (copy / "test_batch").stat().st_mtime_ns
    assert local_copy(data, names) == copy and (copy / "test_batch").stat().st_mtime_ns == made  # not fetched again
    damaged = bytearray((copy / "data_batch_1").read_bytes())
    damaged[100:110] = bytes(10)
    (copy / "data_batch_1").write_bytes(damaged)  # its size unchanged, its sha256 not its download's: fetched again
    assert local_copy(data, names) == copy and (copy / "data_batch_1").read_bytes() == (original / "data_batch_1").read_bytes()

    replacement = bytearray((original / "test_batch").read_bytes())
    replacement[100:110] = b"replaced!!"  # the same size: the store's time of writing tells it apart
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "test_batch").write_bytes(replacement)
    time.sleep(1.1)  # S3 keeps times of writing to the second
    uploaded(tmp_path / "new", data)
    replaced = local_copy(data, names)
    assert replaced != copy and (replaced / "test_batch").read_bytes() == replacement  # a new version, in a folder of its own
    assert (copy / "test_batch").read_bytes() == (original / "test_batch").read_bytes()  # the old one as a worker may still read it
    with pytest.raises(FileNotFoundError, match="missing data_batch_9"):
        local_copy(data, ["data_batch_9"])
    with pytest.raises(OSError, match="listed, then gone when it was copied") as raised:  # not missing from the store: retried
        download(files_at(data), {"data_batch_9": [4, 0]}, tmp_path / "copy")
    assert not isinstance(raised.value, FileNotFoundError) and not (tmp_path / "copy").exists()


def test_moving_or_quarantining_a_file_that_is_gone_is_false_on_a_bucket_as_on_a_disk(s3, tmp_path):
    from tiltsweep.sweep.store.files import files_at

    for location in (tmp_path / "disk", f"s3://{s3.bucket()}/results"):
        files = files_at(location)
        assert files.move("records/gone.msgpack", "quarantine/gone.msgpack") is False
        files.write("records/there.msgpack", b"kept")
        assert files.move("records/there.msgpack", "quarantine/there.msgpack") is True
        assert not files.exists("records/there.msgpack") and files.read("quarantine/there.msgpack") == b"kept"
        results = ResultsDir(location)
        results.quarantine("records/gone.msgpack", "unreadable")  # nothing to move: nothing logged
        assert results.quarantined() == []


def checkpointed_block(s3, tmp_path: Path, monkeypatch) -> tuple[ResultsDir, dict, list]:
    """A pack of one block of 4 points checkpointing every 250 of 1,000 epochs in a bucket, and
    the list into which every write there will go, as (folder, writing thread), in order."""
    grid = write_grid(tmp_path, amplitudes="[2, 3]", epochs=1000)
    grid.write_text(grid.read_text().replace("seed: [0, 1, 2]", "seed: [0, 1]").replace("checkpoint_every: 1000}", "checkpoint_every: 250, batch_points: 4}"))
    spec = load_grid(grid)
    results = results_dir_for(spec, f"s3://{s3.bucket()}/results")
    points = list(spec.points)
    writes, lock, real_write = [], threading.Lock(), ObjectFiles.write

    def write(self, name: str, data: bytes) -> None:
        real_write(self, name, data)
        with lock:
            writes.append((name.split("/")[0], threading.current_thread().name))

    monkeypatch.setattr(ObjectFiles, "write", write)
    return results, payload_for(Pack(pack_id(points), tuple(points)), spec, results, "test"), writes


def test_a_blocks_checkpoints_go_up_while_it_trains_and_have_landed_before_its_points_are_recorded(s3, tmp_path, monkeypatch):
    """A checkpoint save in a bucket is a few round trips: a block's round of them is uploaded
    by threads of their own while the block trains on, and every one has landed before the
    block's points are recorded (whose final records then drop them)."""
    results, payload, writes = checkpointed_block(s3, tmp_path, monkeypatch)
    run_pack(payload, report=lambda result: None)
    saves = [i for i, (folder, _) in enumerate(writes) if folder == "checkpoints"]
    assert len(saves) == 4 * 3  # at epochs 250, 500 and 750 (none at the end)
    assert all(writes[i][1].startswith("checkpoint-saves") for i in saves), writes
    assert max(saves) < max(i for i, (folder, _) in enumerate(writes) if folder == "records")
    assert {record.status for record in results.records.read(payload["pack_id"]).records.values()} == {"completed"}
    assert results.checkpoints.trials() == []


def test_a_block_that_fails_keeps_every_checkpoint_it_made_for_its_retry(s3, tmp_path, monkeypatch):
    """Its last round, still going up when the block fails, lands before the failure is recorded."""
    results, payload, writes = checkpointed_block(s3, tmp_path, monkeypatch)
    monkeypatch.setenv("TILTSWEEP_FAULTS", json.dumps([{"where": {"seed": 1}, "epoch": 1000, "action": "raise"}]))  # at the last evaluation
    with pytest.raises(InjectedFault):
        run_pack(payload, report=lambda result: None)
    members = [member["trial_id"] for member in payload["members"]]
    assert {trial_id: results.checkpoints.newest_epoch(trial_id) for trial_id in members} == dict.fromkeys(members, 750)
    assert {record.status for record in results.records.read(payload["pack_id"]).records.values()} == {"failed"}
    saves = [i for i, (folder, _) in enumerate(writes) if folder == "checkpoints"]
    assert len(saves) == 4 * 3 and max(saves) < max(i for i, (folder, _) in enumerate(writes) if folder == "records")


def downloaded(uri: str, folder: Path) -> Path:
    """`uri`'s objects copied to `folder` (pyarrow, as `aws s3 sync` would)."""
    import pyarrow.fs as pafs

    store, base = pafs.FileSystem.from_uri(uri)
    pafs.copy_files(base, str(folder), source_filesystem=store)
    return folder


def test_kept_states_and_the_quarantine_log_survive_a_copy_between_a_bucket_and_a_disk(s3, tmp_path):
    """On a bucket an appended file is a series of parts, on a disk one file: each is read where
    the other form was copied, the latest of a point's states winning."""
    def kept(results):
        return {trial: results.states.read("p", trial) for trial in ("a", "b")}, [entry["file"] for entry in results.quarantined()]

    bucket = f"s3://{s3.bucket()}"
    stored = ResultsDir(f"{bucket}/from-bucket")
    stored.states.save("p", [("a", b"first of a")])
    stored.files.write("records/bad.msgpack", b"garbage")
    stored.quarantine("records/bad.msgpack", "unreadable")
    on_disk = ResultsDir(downloaded(stored.location, tmp_path / "from-bucket"))
    assert kept(on_disk) == ({"a": b"first of a", "b": None}, ["records/bad.msgpack"])
    on_disk.states.save("p", [("a", b"a again")])  # appended to the one file, after the parts
    on_disk.states.save("p", [("b", b"b")])
    assert kept(on_disk) == ({"a": b"a again", "b": b"b"}, ["records/bad.msgpack"])

    disk = ResultsDir(tmp_path / "from-disk")
    disk.states.save("p", [("a", b"first of a")])
    disk.files.write("summary.parquet/bad.parquet", b"garbage")
    disk.quarantine("summary.parquet/bad.parquet", "unreadable")
    with open(tmp_path / "from-disk" / "states" / "p.states", "ab") as handle:  # a worker killed while appending
        handle.write(b"\x00\x00\x00\x40{\"trial_id\": \"c\"")
    in_bucket = ResultsDir(uploaded(tmp_path / "from-disk", f"{bucket}/from-disk"))
    assert kept(in_bucket) == ({"a": b"first of a", "b": None}, ["summary.parquet/bad.parquet"])
    in_bucket.states.repair("p")  # a retried pack's worker: nothing to cut, as a bucket's file is never appended to
    in_bucket.states.save("p", [("a", b"a again")])  # a part, after the whole file
    in_bucket.states.save("p", [("b", b"b")])
    assert kept(in_bucket) == ({"a": b"a again", "b": b"b"}, ["summary.parquet/bad.parquet"])


def test_a_range_test_reads_its_data_from_the_bucket_and_refuses_an_out_it_cannot_write_before_training(s3, tmp_path, capsys):
    bucket = s3.bucket()
    data = uploaded(write_cifar10_dir(tmp_path / "cifar-10-batches-py"), f"s3://{bucket}/cifar-10-batches-py")
    grid = write_cifar_grid(tmp_path, data)
    grid.write_text(grid.read_text().replace("model: {name: myrtle5, channels: 4}", "model: {name: mlp, width: 8}"))
    rates = ["--min-lr", "0.001", "--max-lr", "0.1", "--epochs", "10", "--evaluations", "5"]
    assert main(["lr-range", str(grid), "--out", "s3://no-such-bucket/results", *rates]) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "no bucket 'no-such-bucket' there" in message, message
    assert not (tmp_path / "cache" / "tiltsweep").exists()  # refused before its data was fetched, let alone trained on
    assert main(["lr-range", str(grid), "--out", f"s3://{bucket}/results", *rates]) == 0
    assert f"s3://{bucket}/results/cifar/lr-range/range.parquet" in capsys.readouterr().out
    assert len(pd.read_parquet(f"s3://{bucket}/results/cifar/lr-range/range.parquet")) >= 3


@pytest.mark.slow
def test_a_sweep_into_s3_is_read_back_by_every_command_and_reader(s3, tmp_path, capsys, tally):
    import duckdb
    import polars
    import pyarrow.dataset

    directory = f"s3://{s3.bucket()}/results/ray-sweep"
    assert main(["run", str(write_grid(tmp_path, epochs=1000)), "--out", directory.rsplit("/", 1)[0]]) == 0
    out = capsys.readouterr().out
    assert f"-> {directory}" in out and f"figures: {directory}/figures/index.html" in out
    assert status_json(directory)["completed"] == POINTS
    assert main(["plot", directory, "--format", "png,svg"]) == 0
    assert f"{directory}/figures/band_val_accuracy.svg" in capsys.readouterr().out
    page = ResultsDir(directory).files.read("figures/index.html").decode()
    assert "6 of 6 points finished" in page and "http-equiv='refresh'" not in page

    summary = pd.read_parquet(f"{directory}/summary.parquet")  # the README's lines, straight from the URI
    curves = pd.read_parquet(f"{directory}/curves.parquet")
    assert len(summary) == POINTS and len(curves) == POINTS * 3 and set(curves["trial_id"]) == set(summary["trial_id"])
    assert polars.read_parquet(f"{directory}/summary.parquet/*.parquet").height == POINTS
    assert polars.scan_parquet(f"{directory}/curves.parquet/*.parquet").collect().height == POINTS * 3
    assert len(duckdb.from_arrow(pyarrow.dataset.dataset(f"{directory}/summary.parquet")).df()) == POINTS
    trials = sorted(summary["trial_id"])
    assert main(["trace", directory, trials[0][:8], "--every", "250"]) == 0  # the other commands, on the URI
    assert f"-> {directory}/traces/{trials[0]}.parquet" in capsys.readouterr().out
    assert main(["interpolate", directory, trials[0], trials[1]]) == 0
    assert f"{directory}/interpolations/{trials[0]}__{trials[1]}.parquet" in capsys.readouterr().out
    assert main(["refine", directory, "--seeds-until", "0.001", "--max-seeds", "4", "--dry-run"]) == 0
    assert "new points" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cache") == ["ray-sweep.yaml"]  # nothing written here
    tally.sweep("sweep into S3 (moto's server)", directory)


@pytest.mark.slow
def test_a_driver_killed_mid_sweep_on_s3_loses_and_repeats_nothing(s3, tmp_path, tally):
    """The driver SIGKILLed while one point holds after its checkpoint and the others finish; its
    lease stays until it runs out, then `resume` takes it over and finishes from the checkpoint."""
    directory = f"s3://{s3.bucket()}/results/ray-sweep"
    grid = write_grid(tmp_path, epochs=2000)
    held_at = {"amplitude": 10, "seed": 1}
    driver = Driver(["run", str(grid), "--out", directory.rsplit("/", 1)[0], "--no-plot"], env=holding(tmp_path / "never", where=held_at))
    try:
        driver.wait_until(lambda: len(records(directory)) == POINTS - 1 and len(checkpoint_epochs(directory, exclude=records(directory))) == 1,
                          what="five finished points and one held after its checkpoint")
        driver.kill()
    finally:
        driver.kill() if driver.process.poll() is None else driver.cleanup()
    finished, held = records(directory), checkpoint_epochs(directory, exclude=records(directory))
    lease = ResultsDir(directory).lock()
    assert lease.owner()["pid"] == driver.process.pid  # the killed run's lease stays until it runs out
    deadline = time.monotonic() + 2 * LEASE
    while lease.holder() is not None and time.monotonic() < deadline:  # renewed lately: it counts as running a while
        time.sleep(0.5)
    assert main(["resume", directory, "--no-plot"]) == 0  # waits for the lease to run out, then takes it over
    assert_each_point_once(directory, POINTS, evaluations=5)
    final = records(directory)
    for trial_id, record in finished.items():
        assert final[trial_id]["finished_at"] == record["finished_at"]  # kept, not run again
    (held_id,) = held
    assert final[held_id]["resumed_from_epoch"] == 1000
    assert ResultsDir(directory).lock().holder() is None  # released at the end
    tally.sweep("driver SIGKILLed mid-way, results on S3", directory, injected=1)


@pytest.mark.slow
def test_a_second_run_into_the_same_s3_directory_is_refused_naming_the_first(s3, tmp_path, capsys, tally):
    directory = f"s3://{s3.bucket()}/results/ray-sweep"
    first, grid, release = held_run(tmp_path, directory, "--no-plot")
    try:
        capsys.readouterr()
        assert main(["resume", directory, "--no-plot"]) == 2
        message = capsys.readouterr().err
        assert message.count("\n") == 1 and f"is in use by another tiltsweep run: pid {first.process.pid} on " in message, message
        time.sleep(LEASE + 1)  # longer than the lease: the first run renews it
        assert main(["run", str(grid), "--out", directory.rsplit("/", 1)[0], "--no-plot"]) == 2
        assert f"pid {first.process.pid}" in capsys.readouterr().err
        release.touch()
        assert first.wait(timeout=240) == 0
    finally:
        first.kill() if first.process.poll() is None else first.cleanup()
    assert_each_point_once(directory, POINTS, evaluations=5)
    tally.sweep("two runs at once into S3", directory, injected=1)


@pytest.mark.slow
def test_a_cluster_whose_nodes_share_no_directory_survives_losing_a_node(s3, s3_server, tmp_path, tally):
    """Two `ray start` nodes, each in a home of its own (no shared disk: results and data only in
    the bucket); the second node is killed while it trains a checkpointed point, and the sweep
    finishes on the head node from that checkpoint."""
    directory = f"s3://{s3.bucket()}/results/two-nodes"
    grid = write_grid(tmp_path, name="two-nodes", epochs=2000)
    release = tmp_path / "release"
    cluster = LocalCluster(head_cpus=1, env=holding(release, env={**s3_server.env, "TILTSWEEP_LEASE_SECONDS": str(LEASE)}), own_homes=True)
    try:
        second = cluster.add_node(cpus=2)
        cluster.wait_for_cpus(3)
        env, home = cluster.home()
        driver = Driver(["run", str(grid), "--address", cluster.address, "--out", directory.rsplit("/", 1)[0], "--no-plot"], env=env, cwd=home)
        try:
            lost = lose_the_node_mid_sweep(driver, second, directory, release)
        finally:
            driver.kill() if driver.process.poll() is None else driver.cleanup()
        assert not list(cluster.temp.glob("**/*.parquet")) and not list(cluster.temp.glob("**/*.msgpack"))  # no result on a node's disk
    finally:
        cluster.shutdown()
    assert_each_point_once(directory, POINTS, evaluations=5)
    final = records(directory)
    assert final[lost]["attempts"] >= 2 and final[lost]["resumed_from_epoch"] == 1000
    tally.sweep("two-node cluster without a shared disk (S3), second node killed", directory, injected=1)


@pytest.mark.slow
def test_cifar_format_data_is_read_from_the_bucket(s3, tmp_path, capsys, tally):
    bucket = s3.bucket()
    data = uploaded(write_cifar10_dir(tmp_path / "cifar-10-batches-py"), f"s3://{bucket}/cifar-10-batches-py")
    grid = write_cifar_grid(tmp_path, data)
    directory = f"s3://{bucket}/results/cifar"
    assert main(["run", str(grid), "--out", directory.rsplit("/", 1)[0], "--no-plot"]) == 0
    assert status_json(directory)["completed"] == 2
    assert json.loads(ResultsDir(directory).tables.summary()["config"][0])["data"]["path"] == data  # as the grid gave it
    copies = [p for p in (tmp_path / "cache" / "tiltsweep" / "data").glob("*/*") if p.is_dir()]
    assert len(copies) == 1 and (copies[0] / ".manifest.json").exists()  # one copy on this machine, for both points
    missing = tmp_path / "missing.yaml"
    missing.write_text(grid.read_text().replace(data, f"s3://{bucket}/gone/cifar-10-batches-py").replace("name: cifar\n", "name: missing\n"))
    capsys.readouterr()
    assert main(["run", str(missing), "--out", directory.rsplit("/", 1)[0]]) == 2
    message = capsys.readouterr().err
    assert f"data.path: s3://{bucket}/gone/cifar-10-batches-py: not a cifar-10-batches-py folder, missing data_batch_1" in message, message
    tally.sweep("CIFAR-10 data read from the bucket (S3)", directory)


@pytest.fixture(scope="module")
def gcs_server():
    server = GcsServer()  # gcp-storage-emulator is a test dependency: one that does not start fails the tests
    yield server
    server.stop()


@pytest.mark.slow
def test_a_sweep_into_gcs_goes_through_the_same_store(gcs_server, monkeypatch, tmp_path, capsys, tally):
    """gs:// through the same code as s3:// (pyarrow.fs), on gcp-storage-emulator: the sweep, its
    status and figures, and a second run refused by the lease. (The emulator ignores GCS's
    generation preconditions, so what is shown here of the lease is its refusal of a run that
    comes second, not of two that start at the same moment.)"""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.env["STORAGE_EMULATOR_HOST"])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    directory = f"gs://{gcs_server.bucket()}/results/ray-sweep"
    first, grid, release = held_run(tmp_path, directory)
    try:
        assert main(["run", str(grid), "--out", directory.rsplit("/", 1)[0], "--no-plot"]) == 2
        assert f"in use by another tiltsweep run: pid {first.process.pid}" in capsys.readouterr().err
        release.touch()
        assert first.wait(timeout=240) == 0, first.output()
    finally:
        first.kill() if first.process.poll() is None else first.cleanup()
    assert status_json(directory)["completed"] == POINTS
    assert main(["plot", directory]) == 0
    assert f"{directory}/figures/index.html" in capsys.readouterr().out
    assert_each_point_once(directory, POINTS, evaluations=5)
    tally.sweep("sweep into GCS (gcp-storage-emulator), a second run refused", directory, injected=1)
