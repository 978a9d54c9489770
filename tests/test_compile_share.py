"""Workers of one machine split the compiling of a shape's programs (trainers.compile_share):
real processes, real claim files, real XLA compilations."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from conftest import spiral_config
from fresh_process import SHARED_PROGRAMS, how_built, outcome, start_training
from tiltsweep.trainers.compile_share import ALONE, BUILT, CLAIMED, READY, WAITED, Claims, build_in_turn


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


def a_dead_pid() -> int:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    return finished.pid


def hold_claim(claims: Claims, key: str, pid: int) -> None:
    claims.path(key, "claim").write_text(json.dumps({"host": claims.me["host"], "pid": pid}))


def test_a_claim_of_a_dead_process_is_taken_over(tmp_path):
    key, calls = f"{tmp_path}/program", []
    claims = Claims(tmp_path / "claims")
    hold_claim(claims, key, a_dead_pid())
    assert build_in_turn([recorder(calls, key)], str(tmp_path)) == {key: CLAIMED}
    assert calls == [key] and claims.is_done(key) and not claims.path(key, "claim").exists()


@pytest.fixture
def live_process():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield sleeper.pid
    sleeper.kill()
    sleeper.wait()


def test_a_program_claimed_by_a_live_process_is_built_after_the_others_once_it_is_done(tmp_path, live_process):
    busy, free, calls = f"{tmp_path}/busy", f"{tmp_path}/free", []
    claims = Claims(tmp_path / "claims")
    hold_claim(claims, busy, live_process)

    def the_other_process_finishes():
        while free not in calls:
            time.sleep(0.005)
        time.sleep(0.1)
        claims.path(busy, "done").touch()
        claims.path(busy, "claim").unlink()

    threading.Thread(target=the_other_process_finishes, daemon=True).start()
    how = build_in_turn([recorder(calls, busy), recorder(calls, free)], str(tmp_path))
    assert how == {free: CLAIMED, busy: WAITED}
    assert calls == [free, busy]


def test_a_worker_waits_no_longer_than_its_limit(tmp_path, live_process):
    key, calls = f"{tmp_path}/stuck", []
    hold_claim(Claims(tmp_path / "claims"), key, live_process)
    assert build_in_turn([recorder(calls, key)], str(tmp_path), wait_limit=0.2) == {key: ALONE}
    assert calls == [key]


def test_a_claim_from_another_host_is_not_waited_for(tmp_path):
    key, calls = f"{tmp_path}/elsewhere", []
    claims = Claims(tmp_path / "claims")
    claims.path(key, "claim").write_text(json.dumps({"host": "another-node", "pid": os.getpid()}))
    assert build_in_turn([recorder(calls, key)], str(tmp_path), wait_limit=600) == {key: ALONE}
    assert claims.path(key, "claim").exists()  # still the other host's


def test_a_program_done_before_is_loaded_and_a_failed_build_releases_its_claim(tmp_path):
    done, failing, calls = f"{tmp_path}/done", f"{tmp_path}/failing", []
    claims = Claims(tmp_path / "claims")
    claims.path(done, "done").touch()
    assert build_in_turn([recorder(calls, done)], str(tmp_path)) == {done: READY}

    def fails():
        raise RuntimeError("XLA ran out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        build_in_turn([(failing, fails)], str(tmp_path))
    assert not claims.path(failing, "claim").exists() and not claims.is_done(failing)
