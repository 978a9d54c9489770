"""The results directory without Ray: records, tables, checkpoints, quarantine, lock, progress."""

import io
import json
import math
import os
import subprocess
import sys
import time

import pandas as pd
import pytest

from tiltsweep.sweep.run.filer import Filer
from tiltsweep.sweep.run.progress import Progress
from tiltsweep.sweep.store import OtherLayout, ResultsDir, SweepDescription, TrialRecord
from tiltsweep.sweep.store.files import atomic_write
from tiltsweep.sweep.store.ledger import Ledger, curve_rows
from tiltsweep.sweep.store.lock import LockHeld
from tiltsweep.sweep.store.records import PackFiles

AXES = {"amplitude": "loss.amplitude", "seed": "seed", "model.width": "model.width"}


def record(trial_id, status="completed", amplitude=10.0, seed=0, history_len=3, written=1.0):
    history = [
        {"step": 100 * i, "epoch": 100 * i, "train_accuracy": 0.5 + 0.1 * i, "val_accuracy": 0.4 + 0.1 * i,
         "train_loss": 1.0 - 0.1 * i, "val_loss": 1.1 - 0.1 * i}
        for i in range(history_len)
    ]
    return TrialRecord(
        trial_id=trial_id, status=status, history=history, steps=100 * (history_len - 1),
        epochs=100 * (history_len - 1), wall_seconds=1.5, code_version="test", written=written,
        config={"loss": {"amplitude": amplitude}, "seed": seed, "model": {"name": "mlp", "width": 20}},
    )


def put(results, pack_id, *records):
    """Add records to a pack's file, as its worker does."""
    pack = results.records.read(pack_id)
    pack.records.update({r.trial_id: r for r in records})
    results.records.write(pack)


@pytest.fixture
def results(tmp_path):
    return ResultsDir(tmp_path / "sweep")


def test_atomic_write_replaces_and_leaves_nothing_aside(tmp_path):
    target = tmp_path / "file.bin"
    atomic_write(target, b"old")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_summary_rows_come_from_records(results):
    put(results, "p1", record("a", amplitude=1.0, seed=0), record("b", amplitude=10.0, seed=1, status="diverged", history_len=2))
    ledger = Ledger(results, AXES)
    ledger.sync()
    summary = pd.read_parquet(results.root / "summary.parquet").set_index("trial_id")
    assert list(summary.index) == ["a", "b"]
    assert summary.loc["a", "amplitude"] == 1.0 and summary.loc["b", "seed"] == 1
    assert summary.loc["a", "model.width"] == 20
    assert summary.loc["a", "val_accuracy"] == pytest.approx(0.6)
    assert summary.loc["a", "best_val_accuracy"] == pytest.approx(0.6)
    assert summary.loc["b", "status"] == "diverged"
    curves = pd.read_parquet(results.root / "curves.parquet")
    assert sorted(curves.groupby("trial_id").size().items()) == [("a", 3), ("b", 2)]


def test_a_rerun_replaces_its_row_and_curve_never_duplicates(results):
    ledger = Ledger(results, AXES)
    put(results, "p1", record("a", status="failed", history_len=0, written=1.0), record("b"))
    ledger.file("p1", ["a", "b"])
    put(results, "p2", record("a", status="completed", written=2.0))  # retried by the next run, in a pack of its own
    ledger.file("p2", ["a"])
    summary = results.tables.summary()
    assert sorted(summary["trial_id"]) == ["a", "b"] and summary.set_index("trial_id")["status"].to_dict() == {"a": "completed", "b": "completed"}
    assert [pd.read_parquet(results.root / "summary.parquet" / f"{pack}.parquet")["trial_id"].tolist() for pack in ("p1", "p2")] == [["b"], ["a"]]  # its row moved
    curves = pd.read_parquet(results.root / "curves.parquet")
    assert curves.groupby("trial_id").size().to_dict() == {"a": 3, "b": 3}
    Ledger(results, AXES).sync()  # the same from the records alone
    by_id = lambda frame: frame.sort_values("trial_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(by_id(results.tables.summary()), by_id(summary))
    assert pd.read_parquet(results.root / "curves.parquet").groupby("trial_id").size().to_dict() == {"a": 3, "b": 3}


def test_a_sync_keeps_one_row_per_point_the_one_that_counts_in_the_pack_holding_it(results):
    ids = [f"t{index}" for index in range(15)]
    for pack in range(3):
        put(results, f"p{pack}", *[record(trial_id, status="failed", history_len=0) for trial_id in ids[pack * 5 : (pack + 1) * 5]])
    retried = ids[3:8]  # trained again in a later pack, from two earlier ones
    put(results, "p9", *[record(trial_id, written=2.0, amplitude=1) for trial_id in retried])  # an int amplitude among floats
    Ledger(results, AXES).sync()
    summary = results.tables.summary()
    assert sorted(summary["trial_id"]) == sorted(ids) and summary["trial_id"].is_unique
    status = summary.set_index("trial_id")["status"]
    assert set(status[retried]) == {"completed"} and set(status.drop(retried)) == {"failed"}
    assert sorted(pd.read_parquet(results.root / "summary.parquet" / "p9.parquet")["trial_id"]) == retried
    assert summary["amplitude"].dtype == float


def test_a_sweeps_summary_files_share_its_columns_and_an_axis_of_several_kinds_is_json_text(results, tmp_path):
    """Typed by the values sweep.json gives each axis, every pack's file has the same columns, so
    that pandas reads the directory whole; `batch_size: [full, 30]` has no one Parquet type."""
    from tiltsweep.analysis.load import load_results

    axes = {**AXES, "optimizer.batch_size": "optimizer.batch_size"}
    points = {"a": {"amplitude": 1.0, "seed": 0, "model.width": 20, "optimizer.batch_size": "full"},
              "b": {"amplitude": 10.0, "seed": 1, "model.width": 20, "optimizer.batch_size": 30}}
    values = {column: list(dict.fromkeys(point[column] for point in points.values())) for column in axes}
    results.save_grid("name: typed\n", tmp_path / "typed.yaml", SweepDescription("typed", values, [], points))
    with_batch = lambda r, size: r.model_copy(update={"config": {**r.config, "optimizer": {"batch_size": size}}})
    put(results, "p1", with_batch(record("a", amplitude=1.0, history_len=0, status="failed"), "full"))
    put(results, "p2", with_batch(record("b", seed=1), 30))
    Ledger(results, axes).sync()
    schemas = {str(pd.read_parquet(path).dtypes.to_dict()) for path in (results.root / "summary.parquet").glob("*.parquet")}
    assert len(results.tables.summary_files()) == 2 and len(schemas) == 1
    summary = pd.read_parquet(results.root / "summary.parquet").set_index("trial_id")  # the directory whole
    assert summary["optimizer.batch_size"].to_dict() == {"a": '"full"', "b": "30"} and summary.loc["a", "error"] in ("", None)
    assert summary["seed"].dtype == "int64" and summary["amplitude"].dtype == float
    loaded = load_results(results.root).summary.set_index("trial_id")
    assert loaded["optimizer.batch_size"].to_dict() == {"a": "full", "b": 30}  # the grid's own values again


def test_a_sync_rewrites_a_summary_file_whose_columns_are_not_the_sweeps(results, tmp_path):
    put(results, "p1", record("a", amplitude=1))  # an int, as no config types it
    put(results, "p2", record("b", amplitude=10.0))
    Ledger(results, AXES).sync()  # no sweep.json: each file typed by its own rows
    assert pd.read_parquet(results.root / "summary.parquet" / "p1.parquet")["amplitude"].dtype == "int64"
    points = {"a": {"amplitude": 1.0, "seed": 0, "model.width": 20}, "b": {"amplitude": 10.0, "seed": 0, "model.width": 20}}
    results.save_grid("name: typed\n", tmp_path / "typed.yaml", SweepDescription("typed", {c: sorted({p[c] for p in points.values()}) for c in AXES}, [], points))
    Ledger(results, AXES).sync()
    assert {str(pd.read_parquet(path)["amplitude"].dtype) for path in (results.root / "summary.parquet").glob("*.parquet")} == {"float64"}
    assert sorted(pd.read_parquet(results.root / "summary.parquet")["trial_id"]) == ["a", "b"]


def test_filing_into_an_unreadable_curve_file_moves_it_aside_and_rebuilds_it_from_the_records(results):
    problems = []
    ledger = Ledger(results, AXES, on_problem=problems.append)
    put(results, "p1", record("a"))
    ledger.file("p1", ["a"])
    (results.root / "curves.parquet" / "p1.parquet").write_bytes(b"not parquet")  # damaged between two filings
    put(results, "p1", record("b"))
    ledger.file("p1", ["b"])
    assert results.tables.curves().groupby("trial_id").size().to_dict() == {"a": 3, "b": 3}
    assert len(problems) == 1 and "p1.parquet" in problems[0] and len(results.quarantined()) == 1


def test_a_final_record_outranks_a_later_failed_one_of_the_same_point(results):
    put(results, "p1", record("a", status="completed", written=1.0))
    put(results, "p2", record("a", status="failed", history_len=0, written=2.0))
    assert results.records.all(on_corrupt=print)["a"][0] == "p1"


def test_unreadable_summary_is_quarantined_and_rebuilt(results):
    put(results, "p1", record("a"))
    Ledger(results, AXES).sync()
    path = results.root / "summary.parquet" / "p1.parquet"
    path.write_bytes(path.read_bytes()[:40])  # truncated
    problems = []
    Ledger(results, AXES, on_problem=problems.append).sync()
    assert results.tables.summary()["trial_id"].tolist() == ["a"]
    assert len(problems) == 1 and "summary.parquet/p1.parquet" in problems[0]
    moved = results.quarantined()
    assert moved[0]["file"] == "summary.parquet/p1.parquet" and (results.root / moved[0]["moved_to"]).exists()


class DecodeCounting(PackFiles):
    """The real records folder, counting the packs whose records (not only headers) are read."""

    decoded = 0

    def read(self, pack_id, only=None, records=True):
        self.decoded += records
        return super().read(pack_id, only=only, records=records)


def test_a_sync_of_whole_tables_reads_the_packs_headers_only_and_mends_a_table_that_lacks_rows(results):
    put(results, "p1", record("a"), record("b", status="failed", history_len=0))
    put(results, "p2", record("c"))
    Ledger(results, AXES).sync()
    counting = ResultsDir(results.root)
    counting.records = DecodeCounting(counting.files)
    Ledger(counting, AXES).sync()
    assert counting.records.decoded == 0  # every table holds what its pack's header says
    curves = pd.read_parquet(results.root / "curves.parquet" / "p1.parquet")
    curves[curves["trial_id"] != "a"].to_parquet(results.root / "curves.parquet" / "p1.parquet")  # a's rows lost, as by a filing cut short
    ledger = Ledger(counting, AXES)
    ledger.sync()
    assert counting.records.decoded == 1 and ledger.status_of("b") == "failed"
    assert results.tables.curves().groupby("trial_id").size().to_dict() == {"a": 3, "c": 3}


def test_unreadable_curve_is_quarantined_and_rewritten_from_its_records(results):
    put(results, "p1", record("a"))
    Ledger(results, AXES).sync()
    (results.root / "curves.parquet" / "p1.parquet").write_bytes(b"garbage")
    Ledger(results, AXES).sync()
    assert len(results.tables.curves()) == 3
    assert results.quarantined()[0]["file"] == "curves.parquet/p1.parquet"


def test_unreadable_pack_is_quarantined_and_its_rows_and_curves_dropped(results):
    put(results, "p1", record("a"))
    put(results, "p2", record("b"), record("c"))
    Ledger(results, AXES).sync()
    (results.root / "records" / "p2.msgpack").write_bytes((results.root / "records" / "p2.msgpack").read_bytes()[:20])
    ledger = Ledger(results, AXES)
    ledger.sync()
    assert results.tables.summary()["trial_id"].tolist() == ["a"]
    assert ledger.status_of("b") is None and ledger.status_of("c") is None  # so the next run trains them again
    assert results.tables.curves()["trial_id"].unique().tolist() == ["a"]  # their curves went with them
    assert results.quarantined()[0]["file"] == "records/p2.msgpack"


def test_a_pack_damaged_within_its_size_is_reported_by_status_and_quarantined_by_a_sync(results, tmp_path):
    from tiltsweep.sweep.store.status import sweep_status

    points = {t: {"seed": seed} for seed, t in enumerate("abc")}
    results.save_grid("name: sweep\n", tmp_path / "g.yaml", SweepDescription("sweep", {"seed": [0, 1, 2]}, [], points))
    put(results, "p1", record("a", seed=0))
    put(results, "p2", record("b", seed=1), record("c", seed=2))
    Ledger(results, AXES).sync()
    path = results.root / "records" / "p2.msgpack"
    data = path.read_bytes()
    path.write_bytes(data[:-20] + bytes(10) + data[-10:])  # ten bytes of its records overwritten, its size unchanged
    status = sweep_status(results)
    assert status.counts()["completed"] == 1 and status.trials["pending"] == ["b", "c"]
    assert len(status.unreadable) == 1 and "records/p2.msgpack: not a pack of trial records" in status.unreadable[0]
    ledger = Ledger(results, AXES)
    ledger.sync()
    assert ledger.status_of("b") is None and results.tables.summary()["trial_id"].tolist() == ["a"]
    assert results.quarantined()[0]["file"] == "records/p2.msgpack"


def test_curves_with_different_columns_line_up(results):
    first, second = record("a", history_len=1), record("b", history_len=1)
    second.history[0]["hessian_eig_1"] = 3.0
    results.tables.replace_rows("curves.parquet/p1.parquet", curve_rows([first]))
    results.tables.replace_rows("curves.parquet/p2.parquet", curve_rows([second]))
    curves = results.tables.curves().set_index("trial_id")
    assert math.isnan(curves.loc["a", "hessian_eig_1"]) and curves.loc["b", "hessian_eig_1"] == 3.0


def test_checkpoints_keep_the_newest_two_and_skip_a_corrupt_one(results):
    for epoch in (10, 20, 30):
        results.checkpoints.save("t", epoch, f"state at {epoch}".encode())
    assert results.checkpoints.names("t") == ["checkpoints/t/epoch-000000000030.ckpt", "checkpoints/t/epoch-000000000020.ckpt"]
    assert results.checkpoints.latest("t") == (30, b"state at 30")
    newest = results.root / results.checkpoints.newest("t")
    newest.write_bytes(newest.read_bytes()[:-3])  # truncated
    assert results.checkpoints.latest("t") == (20, b"state at 20")
    assert results.quarantined()[0]["file"].endswith("epoch-000000000030.ckpt")
    assert "checksum" in results.quarantined()[0]["reason"]


def test_lock_refuses_a_second_run_and_names_the_holder_until_it_dies(results):
    results.root.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from tiltsweep.sweep.store import ResultsDir; lock = ResultsDir(sys.argv[1]).lock(); "
         "lock.acquire(); print('locked', flush=True); time.sleep(60)", str(results.root)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert results.lock().holder()["pid"] == holder.pid
        with pytest.raises(LockHeld, match=f"in use by another tiltsweep run: pid {holder.pid} on "):
            results.lock().acquire(timeout=0.1)
    finally:
        holder.kill()  # SIGKILL: no release, no cleanup
        holder.wait()
    # The operating system freed the dead holder's lock: the next run takes it over.
    assert results.lock().holder() is None
    lock = results.lock()
    lock.acquire(timeout=0)
    assert lock.owner()["pid"] == os.getpid()
    lock.release()
    assert not (results.root / ".lock.owner").exists() and results.lock().holder() is None


def test_progress_line_counts_and_estimates():
    now = [0.0]
    stream = io.StringIO()
    progress = Progress("demo", total=10, already_done=2, stream=stream, now=lambda: now[0])
    progress.trial_started("a")
    progress.trial_started("b")
    now[0] = 30.0
    progress.trial_finished("a", "completed")
    now[0] = 60.0
    progress.trial_finished("b", "failed")
    assert stream.getvalue().splitlines()[-1] == "demo: 4/10 done · 0 running · 1 failed · 1:00 elapsed · ~3:00 left"


def test_progress_in_a_log_file_is_a_few_lines_not_one_per_point():
    now = [0.0]
    stream = io.StringIO()
    progress = Progress("big", total=1000, already_done=0, stream=stream, now=lambda: now[0])
    for i in range(1000):
        now[0] += 0.01
        progress.trial_finished(f"t{i}", "failed" if i == 500 else "completed")
    lines = stream.getvalue().splitlines()
    assert 20 <= len(lines) <= 22  # every 5 %, the failure, and the last point
    assert any("1 failed" in line and line.startswith("big: 501/1000") for line in lines)
    assert lines[-1].startswith("big: 1000/1000 done")


class CountingLedger(Ledger):
    """The real ledger, counting its filings (each rewrites its pack's files once)."""

    filings = 0

    def file(self, pack_id, trial_ids):
        self.filings += 1
        return super().file(pack_id, trial_ids)


def test_filer_files_off_the_calling_thread_with_one_rewrite_of_a_pack_per_batch(results):
    put(results, "p1", *[record(trial_id, seed=ord(trial_id)) for trial_id in "abc"])
    ledger = CountingLedger(results, AXES)
    progress = Progress("demo", total=3, already_done=0, stream=io.StringIO())
    filer = Filer(ledger, progress.trial_finished)
    with progress.lock:  # the filer stops at its first progress update...
        filer.file("p1", ["a"])
        deadline = time.monotonic() + 10
        while ledger.status_of("a") is None and time.monotonic() < deadline:
            time.sleep(0.01)
        filer.file("p1", ["b"])  # ...so these two finish while it is busy
        filer.file("p1", ["c"])
    filer.close()
    assert ledger.filings == 2  # [a], then [b, c] together
    assert results.tables.summary()["trial_id"].tolist() == ["a", "b", "c"]
    assert sorted(results.tables.curves()["trial_id"].unique()) == ["a", "b", "c"]
    assert progress.done == 3


def test_a_filing_that_fails_is_reported_once_and_the_filer_goes_on_with_the_records_kept(results):
    """Not the store's trouble (a file where the curves folder belongs): the run goes on filing,
    and its last sync files what the failed filings left out."""
    put(results, "p1", record("a"), record("b"), record("c"))
    results.root.mkdir(parents=True, exist_ok=True)
    blocking = results.root / "curves.parquet"
    blocking.write_text("a file where the curves directory belongs")
    problems: list[str] = []
    ledger = Ledger(results, AXES, on_problem=problems.append)
    progress = Progress("demo", total=3, already_done=0, stream=io.StringIO())
    filer = Filer(ledger, progress.trial_finished)
    filer.file("p1", ["a", "b"])
    deadline = time.monotonic() + 10
    while not problems and time.monotonic() < deadline:
        time.sleep(0.01)
    blocking.unlink()
    filer.file("p1", ["c"])
    filer.close()  # raises nothing: what failed was not the store
    assert len(problems) == 1 and "filing finished points into the tables failed" in problems[0], problems
    assert progress.done == 1  # c; a and b were not filed
    assert all(results.records.read("p1").records[t].status == "completed" for t in "abc")
    ledger.sync()
    assert sorted(results.tables.summary()["trial_id"]) == ["a", "b", "c"]
    assert sorted(results.tables.curves()["trial_id"].unique()) == ["a", "b", "c"]


def test_kept_states_survive_a_torn_entry_and_the_next_append_after_it(results):
    results.states.save("p1", [("a", b"state of a")])
    results.states.save("p1", [("b", b"early b")], epoch=10)
    with open(results.root / "states" / "p1.states", "ab") as handle:  # a worker killed while appending
        handle.write(b"\x00\x00\x00\x40{\"trial_id\": \"c\"")
    assert set(results.states.kept("p1")) == {("a", None), ("b", 10)}
    results.states.repair("p1")  # the retried pack's worker, before it trains
    results.states.save("p1", [("c", b"state of c")])
    results.states.save("p1", [("a", b"a again")])  # the last whole entry counts
    assert results.states.read("p1", "c") == b"state of c" and results.states.read("p1", "a") == b"a again"
    assert results.states.read("p1", "b") is None and results.states.read("p1", "b", epoch=10) == b"early b"


def test_sweep_json_is_read_once_and_what_is_written_is_what_is_read_after(results, tmp_path):
    """Each read is a request on object storage: a ResultsDir reads sweep.json once, and keeps
    what it writes there."""
    reads = []
    read = results.files.read
    results.files.read = lambda name: reads.append(name) or read(name)
    results.save_grid("name: sweep\n", tmp_path / "g.yaml", SweepDescription("sweep", {"seed": [0]}, [], {"a": {"seed": 0}}))
    assert results.description().points == {"a": {"seed": 0}} and results.grid_base_dir() == tmp_path
    assert "sweep.json" not in reads
    again = ResultsDir(results.root)
    again.files.read = results.files.read
    assert again.description() == results.description() and again.grid_base_dir() == tmp_path
    assert reads.count("sweep.json") == 1


def test_a_directory_of_another_layout_is_refused_with_one_line_naming_it(results, tmp_path, capsys):
    from tiltsweep.sweep.commands.cli import main

    results.save_grid("name: sweep\n", tmp_path / "g.yaml",
                      SweepDescription("sweep", {"seed": [0]}, [], {"a": {"seed": 0}}))
    sweep_json = results.root / "sweep.json"
    saved = json.loads(sweep_json.read_text())
    assert saved["layout"] == 1
    sweep_json.write_text(json.dumps({key: value for key, value in saved.items() if key != "layout"}))
    assert ResultsDir(results.root).description().points == {"a": {"seed": 0}}  # tiltsweep 0.1 wrote layout 1 without saying so
    sweep_json.write_text(json.dumps({**saved, "layout": 2}))
    with pytest.raises(OtherLayout):
        ResultsDir(results.root).description()
    for command in ("status", "plot", "resume", "trace"):
        capsys.readouterr()
        assert main([command, str(results.root), *(["a"] if command == "trace" else [])]) == 2
        message = capsys.readouterr().err
        assert message.count("\n") == 1 and "written with results layout 2" in message and "into a new --out" in message, message


def test_directories_of_development_shapes_are_refused_not_read(results, tmp_path):
    """Without a layout version, only tiltsweep 0.1's shape reads as layout 1: a summary written
    whole, record headers that do not count evaluations, or records kept per point were development
    versions' (layout 0)."""
    import msgpack

    results.save_grid("name: sweep\n", tmp_path / "g.yaml", SweepDescription("sweep", {"seed": [0]}, [], {"a": {"seed": 0}}))
    sweep_json = results.root / "sweep.json"
    sweep_json.write_text(json.dumps({k: v for k, v in json.loads(sweep_json.read_text()).items() if k != "layout"}))
    put(results, "p1", record("a"))
    assert ResultsDir(results.root).description().name == "sweep"
    data = (results.root / "records" / "p1.msgpack").read_bytes()
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    header = unpacker.unpack()
    header["index"] = {t: entry[:3] for t, entry in header["index"].items()}  # before headers counted evaluations
    (results.root / "records" / "p1.msgpack").write_bytes(msgpack.packb(header) + data[unpacker.tell():])
    with pytest.raises(OtherLayout, match="written with results layout 0"):
        ResultsDir(results.root).description()
    (results.root / "records" / "p1.msgpack").unlink()
    (results.root / "summary.parquet").write_bytes(b"a summary written whole")
    with pytest.raises(OtherLayout, match="written with results layout 0"):
        ResultsDir(results.root).description()
    (results.root / "summary.parquet").unlink()
    assert ResultsDir(results.root).description().name == "sweep"  # no records yet: 0.1's shape
    (results.root / "trials" / "a").mkdir(parents=True)  # records kept per point, before packs
    (results.root / "trials" / "a" / "record.json").write_text("{}")
    with pytest.raises(OtherLayout, match="written with results layout 0"):
        ResultsDir(results.root).description()


def test_a_directory_whose_run_stopped_before_describing_it_says_resume_describes_it(results, tmp_path, capsys):
    from tiltsweep.sweep.commands.cli import main

    results.save_grid("name: sweep\n", tmp_path / "g.yaml", SweepDescription("sweep", {"seed": [0]}, [], {"a": {"seed": 0}}))
    (results.root / "sweep.json").unlink()  # the run was killed between writing grid.yaml and sweep.json
    assert results.opened() is results  # `resume` may open it (and writes sweep.json again)
    assert main(["status", str(results.root)]) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "stopped before it described the sweep" in message and "tiltsweep resume" in message
