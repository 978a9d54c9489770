"""The results directory without Ray: records, tables, checkpoints, quarantine, lock, progress."""

import io
import math
import os
import subprocess
import sys
import time

import pandas as pd
import pytest

from tiltsweep.sweep.atomic import atomic_write
from tiltsweep.sweep.filer import Filer
from tiltsweep.sweep.ledger import Ledger, read_summary
from tiltsweep.sweep.lock import LockHeld, RunLock
from tiltsweep.sweep.progress import Progress
from tiltsweep.sweep.results import ResultsDir
from tiltsweep.sweep.store import read_curves, write_curve

AXES = {"amplitude": "loss.amplitude", "seed": "seed", "model.width": "model.width"}


def record(trial_id, status="completed", amplitude=10.0, seed=0, history_len=3):
    history = [
        {"step": 100 * i, "epoch": 100 * i, "train_accuracy": 0.5 + 0.1 * i, "val_accuracy": 0.4 + 0.1 * i,
         "train_loss": 1.0 - 0.1 * i, "val_loss": 1.1 - 0.1 * i}
        for i in range(history_len)
    ]
    return {
        "trial_id": trial_id, "status": status, "history": history, "steps": 100 * (history_len - 1),
        "epochs": 100 * (history_len - 1), "wall_seconds": 1.5, "code_version": "test",
        "config": {"loss": {"amplitude": amplitude}, "seed": seed, "model": {"name": "mlp", "width": 20}},
    }


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
    results.write_record(record("a", amplitude=1.0, seed=0))
    results.write_record(record("b", amplitude=10.0, seed=1, status="diverged", history_len=2))
    ledger = Ledger(results, AXES)
    ledger.sync()
    summary = pd.read_parquet(results.summary_path).set_index("trial_id")
    assert list(summary.index) == ["a", "b"]
    assert summary.loc["a", "amplitude"] == 1.0 and summary.loc["b", "seed"] == 1
    assert summary.loc["a", "model.width"] == 20
    assert summary.loc["a", "val_accuracy"] == pytest.approx(0.6)
    assert summary.loc["a", "best_val_accuracy"] == pytest.approx(0.6)
    assert summary.loc["b", "status"] == "diverged"
    curves = pd.read_parquet(results.curves_dir)
    assert sorted(curves.groupby("trial_id").size().items()) == [("a", 3), ("b", 2)]


def test_a_rerun_replaces_its_row_and_curve_never_duplicates(results):
    ledger = Ledger(results, AXES)
    results.write_record(record("a", status="failed", history_len=0))
    ledger.file("a")
    ledger.write_summary()
    results.write_record(record("a", status="completed"))
    ledger.file("a")
    ledger.write_summary()
    summary = read_summary(results)
    assert summary["trial_id"].tolist() == ["a"] and summary["status"].tolist() == ["completed"]
    assert len(read_curves(results.curves_dir)) == 3


def test_unreadable_summary_is_quarantined_and_rebuilt(results):
    results.write_record(record("a"))
    Ledger(results, AXES).sync()
    results.summary_path.write_bytes(results.summary_path.read_bytes()[:40])  # truncated
    problems = []
    Ledger(results, AXES, on_problem=problems.append).sync()
    assert read_summary(results)["trial_id"].tolist() == ["a"]
    assert len(problems) == 1 and "summary.parquet" in problems[0]
    moved = results.quarantined()
    assert moved[0]["file"] == "summary.parquet" and (results.root / moved[0]["moved_to"]).exists()


def test_unreadable_curve_is_quarantined_and_rewritten_from_its_record(results):
    results.write_record(record("a"))
    Ledger(results, AXES).sync()
    (results.curves_dir / "a.parquet").write_bytes(b"garbage")
    Ledger(results, AXES).sync()
    assert len(read_curves(results.curves_dir)) == 3
    assert results.quarantined()[0]["file"] == "curves.parquet/a.parquet"


def test_unreadable_record_is_quarantined_and_its_row_dropped(results):
    results.write_record(record("a"))
    results.write_record(record("b"))
    Ledger(results, AXES).sync()
    results.record_path("b").write_bytes(results.record_path("b").read_bytes()[:20])
    ledger = Ledger(results, AXES)
    ledger.sync()
    assert read_summary(results)["trial_id"].tolist() == ["a"]
    assert ledger.status_of("b") is None  # so the next run trains it again
    assert results.quarantined()[0]["file"] == "trials/b.msgpack"


def test_curves_with_different_columns_line_up(tmp_path):
    write_curve(tmp_path, "a", [{"step": 0, "epoch": 0, "val_accuracy": 0.5}])
    write_curve(tmp_path, "b", [{"step": 0, "epoch": 0, "val_accuracy": 0.6, "hessian_eig_1": 3.0}])
    curves = read_curves(tmp_path).set_index("trial_id")
    assert math.isnan(curves.loc["a", "hessian_eig_1"]) and curves.loc["b", "hessian_eig_1"] == 3.0


def test_checkpoints_keep_the_newest_two_and_skip_a_corrupt_one(results):
    for epoch in (10, 20, 30):
        results.save_checkpoint("t", epoch, f"state at {epoch}".encode())
    assert [p.name for p in results.checkpoint_files("t")] == ["epoch-000000000030.ckpt", "epoch-000000000020.ckpt"]
    assert results.latest_checkpoint("t") == (30, b"state at 30")
    newest = results.checkpoint_files("t")[0]
    newest.write_bytes(newest.read_bytes()[:-3])  # truncated
    assert results.latest_checkpoint("t") == (20, b"state at 20")
    assert results.quarantined()[0]["file"].endswith("epoch-000000000030.ckpt")
    assert "checksum" in results.quarantined()[0]["reason"]


def test_lock_refuses_a_second_run_and_names_the_holder(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from sweep.lock import RunLock; RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)", str(tmp_path / ".lock")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockHeld, match=f"in use by another tiltsweep run: pid {holder.pid} on "):
            RunLock(tmp_path / ".lock").acquire()
    finally:
        holder.kill()
        holder.wait()
    # The holder is dead now: its lock is stale and the next run takes it over.
    lock = RunLock(tmp_path / ".lock")
    lock.acquire()
    assert lock.owner()["pid"] == os.getpid()
    assert list(tmp_path.glob(".lock.stale-*"))
    lock.release()
    assert not (tmp_path / ".lock").exists()


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
    """The real ledger, counting its summary.parquet rewrites."""

    summaries_written = 0

    def write_summary(self) -> None:
        self.summaries_written += 1
        super().write_summary()


def test_filer_files_off_the_calling_thread_with_one_summary_per_batch(results):
    for trial_id in "abc":
        results.write_record(record(trial_id, seed=ord(trial_id)))
    ledger = CountingLedger(results, AXES)
    progress = Progress("demo", total=3, already_done=0, stream=io.StringIO())
    filer = Filer(ledger, progress)
    with progress.lock:  # the filer stops at its first progress update...
        filer.file(["a"])
        deadline = time.monotonic() + 10
        while "a" not in ledger.rows and time.monotonic() < deadline:
            time.sleep(0.01)
        filer.file(["b"])  # ...so these two finish while it is busy
        filer.file(["c"])
    filer.close()
    assert ledger.summaries_written == 2  # [a], then [b, c] together
    assert read_summary(results)["trial_id"].tolist() == ["a", "b", "c"]
    assert sorted(read_curves(results.curves_dir)["trial_id"].unique()) == ["a", "b", "c"]
    assert progress.done == 3


def test_filer_close_raises_what_filing_met_and_the_records_stay(results):
    results.write_record(record("a"))
    results.curves_dir.parent.mkdir(parents=True, exist_ok=True)
    results.curves_dir.write_text("a file where the curves directory belongs")
    filer = Filer(Ledger(results, AXES), Progress("demo", total=1, already_done=0, stream=io.StringIO()))
    filer.file(["a"])
    with pytest.raises(OSError):
        filer.close()
    assert results.read_record("a")["status"] == "completed"
