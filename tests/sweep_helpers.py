"""Helpers for tests that run real sweeps: grid files, drivers in subprocesses, and cleanup of
the processes a killed driver leaves behind, by their ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional


from process_tree import ProcessTree
from tiltsweep.sweep.store import ResultsDir

GRID = """\
name: {name}
data: {{name: spiral, points_per_class: 30, classes: 3}}
model: {{name: mlp, width: 10}}
optimizer: {{name: sgd, learning_rate: 1.0, batch_size: full}}
training: {{epochs: {epochs}, eval_every: 500, checkpoint_every: 1000}}
loss: {{amplitude: 1, period: 200}}
grid:
  amplitude: {amplitudes}
  seed: [0, 1, 2]
resources: {{cpu: {cpu}, retries: {retries}}}
"""


def write_grid(directory: Path, name="ray-sweep", amplitudes="[1, 10]", epochs=2000, retries=2, cpu=1) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(GRID.format(name=name, amplitudes=amplitudes, epochs=epochs, retries=retries, cpu=cpu))
    return path


CIFAR_GRID = """\
name: cifar
data: {{name: cifar10, path: "{path}", classes: [0, 1], train_size: 40, val_size: 8}}
model: {{name: myrtle5, channels: 4}}
optimizer: {{name: sgd, learning_rate: 0.01, batch_size: 20}}
training: {{epochs: 2, eval_every: 1}}
loss: {{amplitude: 1, period: 10}}
grid: {{amplitude: [1, 3]}}
"""


def write_cifar_grid(directory: Path, path: str) -> Path:
    """directory/cifar.yaml: a tiny Myrtle5 sweep (two trainings of 2 epochs) on CIFAR-format data at `path`."""
    grid = directory / "cifar.yaml"
    grid.write_text(CIFAR_GRID.format(path=path))
    return grid


def warm_up_alone(spec, cache: Path, python: str = sys.executable, cwd: Optional[Path] = None, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """sweep.run.warmup's process for `spec`, run to its end by `python`, compiling into `cache`."""
    import pickle
    import tempfile

    from tiltsweep.sweep.run.warmup import CODE

    sent = Path(tempfile.mkdtemp()) / "spec.pickle"
    sent.write_bytes(pickle.dumps(spec))
    return subprocess.run([python, "-c", CODE, str(sent)], cwd=cwd, capture_output=True, timeout=300,
                          env={**(env or os.environ), "TILTSWEEP_COMPILE_CACHE": str(cache)})


def holding(release: Path, where: Optional[dict] = None, env: Optional[dict] = None) -> dict:
    """An environment in which the matching points (default: all) of a driver's sweep hold at
    epoch 1500 (after their checkpoint at 1000, with write_grid's settings) until `release`
    exists, once per point: a test makes its moment happen instead of racing the sweep for it."""
    fault = {"where": where or {}, "epoch": 1500, "action": "hold", "until": str(release)}
    return {**(os.environ if env is None else env), "TILTSWEEP_FAULTS": json.dumps([fault])}


def trial_id_at(grid: Path, **axes) -> str:
    """The trial id of the grid file's point at these axis values (by their paths)."""
    from tiltsweep.sweep.grid import load_grid

    return next(point.trial_id for point in load_grid(grid).points if point.axes == axes)


def status_json(results_dir: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "tiltsweep", "status", str(results_dir), "--json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def records(results_dir: Path) -> dict[str, dict]:
    """trial id -> its record (the one that counts, store.records), as a plain dict."""
    found = ResultsDir(results_dir).records.all(on_corrupt=lambda error: None)
    return {trial_id: record.model_dump() for trial_id, (_, record) in found.items()}


def every_record(results_dir: Path) -> list:
    """Every record in every pack file, superseded ones included."""
    results = ResultsDir(results_dir)
    return [record for pack_id in results.records.ids() for record in results.records.read(pack_id).records.values()]


def started_by(results_dir: Path) -> dict[str, int]:
    """trial id -> the pid of the worker process that last started training it."""
    results = ResultsDir(results_dir)
    return {trial_id: int(worker.rsplit(":", 1)[1]) for pack_id in results.records.ids()
            for trial_id, worker in results.records.read(pack_id).workers.items()}


def checkpoint_epochs(results_dir: Path, exclude=()) -> dict[str, int]:
    results = ResultsDir(results_dir)
    found = {t: results.checkpoints.latest(t) for t in results.checkpoints.trials() if t not in exclude}
    return {t: found[t][0] for t in found if found[t]}


def held_run(tmp_path: Path, directory: str, *options: str) -> tuple["Driver", Path, Path]:
    """`tiltsweep run` of write_grid's sweep (the grid file, returned) into `directory` (a results
    directory named ray-sweep, on a disk or a bucket), each point holding after its checkpoint at
    1000 until the returned release file exists; returns once a checkpoint is there. The caller
    ends the driver."""
    grid, release = write_grid(tmp_path, epochs=2000), tmp_path / "release"
    driver = Driver(["run", str(grid), "--out", directory.rsplit("/", 1)[0], *options], env=holding(release))
    try:
        driver.wait_until(lambda: checkpoint_epochs(directory), what="a checkpoint of the held run")
    except BaseException:
        driver.kill()
        raise
    return driver, grid, release


class Driver:
    """`tiltsweep ARGS` in its own process; remembers every process it (and Ray) starts, so
    that after a SIGKILL those can be stopped by id."""

    def __init__(self, args: list[str], env: Optional[dict] = None, command: Optional[list[str]] = None, cwd: Optional[Path] = None):
        """`command` (default: the tiltsweep command) is followed by `args`."""
        command = command or [sys.executable, "-m", "tiltsweep"]
        self.process = subprocess.Popen([*command, *args], env=env or os.environ.copy(), cwd=cwd,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.tree = ProcessTree(self.process.pid)

    def wait_until(self, condition: Callable[[], bool], timeout: float = 240, what: str = "the condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.tree.remember()
            if condition():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"the driver ended (code {self.process.returncode}) before {what}:\n{self.process.stdout.read()}")
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    def kill(self) -> None:
        """SIGKILL the driver, then every process it had started (Ray's), by id."""
        self.tree.remember()
        self.process.kill()
        self.process.wait(timeout=30)
        self.cleanup()

    def wait(self, timeout: float = 300) -> int:
        """Wait for the driver to end, remembering the processes it starts until then."""
        deadline = time.monotonic() + timeout
        try:
            while self.process.poll() is None:
                if time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired(self.process.args, timeout)
                self.tree.remember()
                time.sleep(0.2)
            return self.process.returncode
        finally:
            self.cleanup()

    def output(self) -> str:
        return self.process.stdout.read() if self.process.stdout else ""

    def cleanup(self) -> None:
        self.tree.kill()


def assert_each_point_once(directory, points: int, evaluations: int) -> None:
    """Every point has exactly one final record, one summary row and one full curve (`directory`:
    a path or an object-storage URI)."""
    final = records(directory)
    assert len(final) == points and {r["status"] for r in final.values()} == {"completed"}
    finals = [record.trial_id for record in every_record(directory) if record.final]
    assert sorted(finals) == sorted(final)
    results = ResultsDir(directory)
    summary = results.tables.summary()
    assert len(summary) == points and summary["trial_id"].is_unique and set(summary["trial_id"]) == set(final)
    curves = results.tables.curves()
    sizes = curves.groupby("trial_id").size()
    assert len(sizes) == points and (sizes == evaluations).all(), sizes.to_dict()
    assert not curves.duplicated(["trial_id", "step"]).any()


def lose_the_node_mid_sweep(driver: Driver, node, directory, release: Path) -> str:
    """Wait until `node` (a ray_cluster Node) trains a point that has a checkpoint, kill every
    process of that node, release the held points, and wait for the driver to finish the sweep
    (exit 0). Returns the point that was on the node."""
    def trial_on_the_node():
        pids = {p.pid for p in node.tree.remember()}
        running = checkpoint_epochs(directory, exclude=records(directory))
        return next((t for t in running if started_by(directory).get(t) in pids), None)

    driver.wait_until(lambda: trial_on_the_node() is not None, what="a checkpointed trial on the node")
    lost = trial_on_the_node()
    node.kill()  # every process of the node, the worker training `lost` among them
    release.touch()
    assert driver.wait(timeout=400) == 0, driver.output()
    return lost
