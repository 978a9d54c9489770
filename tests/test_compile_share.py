"""Workers of one machine split the compiling of a shape's programs (trainers.compilation.share):
real processes, real OS locks, real XLA compilations."""

import subprocess
import sys
import time

import pytest

from conftest import spiral_config
from fresh_process import SHARED_PROGRAMS, how_built, outcome, start_training
from filelock import FileLock

from tiltsweep.trainers.compilation.share import ALONE, BUILT, CLAIMED, READY, WAITED, build_in_turn, claim_path


@pytest.mark.slow
def test_two_workers_starting_one_shape_together_compile_one_program_each(tmp_path):
    config = spiral_config(training={"epochs": 200, "eval_every": 100})
    go = tmp_path / "go"
    workers = [start_training(config, tmp_path / "cache", go) for _ in range(2)]
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("go.ready.*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()  # both are imported and waiting: they start building at the same moment
        runs = [outcome(worker) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    for run in runs:  # each worker compiled one of the two programs and loaded the other
        assert sorted(how_built(run).values()) == ["compiled", "loaded"], run["programs"]
    compiled = [name for run in runs for name, how in how_built(run).items() if how == "compiled"]
    assert sorted(compiled) == sorted(SHARED_PROGRAMS)
    assert runs[0]["history"] == runs[1]["history"]  # a loaded program trains like a compiled one


def recorder(calls: list, name: str):
    return name, lambda: calls.append(name)


def test_without_a_cache_every_program_is_built_once_per_process(tmp_path):
    calls = []
    keys = [f"{tmp_path}/a", f"{tmp_path}/b"]
    assert build_in_turn([recorder(calls, k) for k in keys], None) == {k: ALONE for k in keys}
    assert build_in_turn([recorder(calls, k) for k in keys], None) == {k: BUILT for k in keys}
    assert calls == keys


HOLD = """
import os, sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.005)
if sys.argv[3]:
    open(sys.argv[3], "w").close()
lock.release()
"""


@pytest.fixture
def holder(tmp_path):
    """holder(key, done=False): another process that takes `key`'s lock and holds it until
    `tmp_path/release` exists (then marks the program done, if asked, and releases it)."""
    started = []

    def hold(key: str, done: bool = False) -> subprocess.Popen:
        claims = tmp_path / "claims"
        claims.mkdir(exist_ok=True)
        marker = str(claim_path(claims, key, "done")) if done else ""
        process = subprocess.Popen([sys.executable, "-c", HOLD, str(claim_path(claims, key, "lock")), str(tmp_path / "release"), marker],
                                   stdout=subprocess.PIPE, text=True)
        started.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield hold
    for process in started:
        process.kill()
        process.wait()


def test_the_lock_of_a_killed_process_is_free_at_once(tmp_path, holder):
    key, calls = f"{tmp_path}/program", []
    killed = holder(key)
    killed.kill()  # mid-compile: the OS releases its lock, whatever process gets its id next
    killed.wait()
    assert build_in_turn([recorder(calls, key)], str(tmp_path)) == {key: CLAIMED}
    assert calls == [key] and claim_path(tmp_path / "claims", key, "done").exists()


def test_a_program_another_process_builds_is_built_after_the_others_once_it_is_done(tmp_path, holder):
    busy, free, calls = f"{tmp_path}/busy", f"{tmp_path}/free", []
    holder(busy, done=True)

    def free_then_release():
        calls.append(free)
        (tmp_path / "release").touch()  # the other process finishes while this one waits

    how = build_in_turn([recorder(calls, busy), (free, free_then_release)], str(tmp_path))
    assert how == {free: CLAIMED, busy: WAITED}
    assert calls == [free, busy]


def test_a_worker_waits_no_longer_than_its_limit(tmp_path, holder):
    key, calls = f"{tmp_path}/stuck", []
    holder(key)
    assert build_in_turn([recorder(calls, key)], str(tmp_path), wait_limit=0.2) == {key: ALONE}
    assert calls == [key]


def test_a_program_done_before_is_loaded_and_a_failed_build_releases_its_lock(tmp_path):
    done, failing, calls = f"{tmp_path}/done", f"{tmp_path}/failing", []
    claims = tmp_path / "claims"
    claims.mkdir()
    claim_path(claims, done, "done").touch()
    assert build_in_turn([recorder(calls, done)], str(tmp_path)) == {done: READY}

    def fails():
        raise RuntimeError("XLA ran out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        build_in_turn([(failing, fails)], str(tmp_path))
    assert not claim_path(claims, failing, "done").exists()
    with FileLock(claim_path(claims, failing, "lock")).acquire(timeout=0):  # released
        pass
