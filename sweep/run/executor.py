"""Ray: the one module that imports it. Fans grid points out over Ray Tune workers, and submits
sweeps to a cluster as Ray jobs.

- Without an address tiltsweep starts a Ray of its own on this machine, even where another Ray
  runs here (no dashboard unless asked; then on 127.0.0.1 only). With one, the sweep joins that cluster; tiltsweep's own packages are shipped to the
  workers, and the results directory must be on storage every node sees.
- A Tune trial, asking for the grid file's resources (cpu, gpu, TPU), trains one pack of points
  (run.packs). Actors are reused, so a worker process compiles once per model shape and trains
  many points; with the persistent compilation cache (trainers.compilation.cache) it loads what
  earlier workers on the machine compiled.
- A worker reports the points it starts and finishes (at most once a second; run.worker); the
  driver files each finished one (run.filer).
- A trial that raises or whose worker dies is retried `resources.retries` times, and after the
  last retry its points that started and have no record are recorded failed: run.retries.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import shlex
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

import ray
from ray import tune

from tiltsweep.sweep.errors import Refused, StorageTrouble, describe_trouble, storage_trouble
from tiltsweep.sweep.grid import GridPoint, GridSpec
from tiltsweep.sweep.run import retries
from tiltsweep.sweep.run.filer import Filer
from tiltsweep.sweep.run.packs import Pack, accelerated, plan_packs, trial_resources, trial_share, trials_at_once
from tiltsweep.sweep.run.progress import Progress
from tiltsweep.sweep.store import CorruptFile, PackRecords, ResultsDir
from tiltsweep.sweep.store.ledger import Ledger


CODE_SHIPPED = "TILTSWEEP_CODE_SHIPPED"
PARTS = ("trainers", "sweep", "analysis")


@functools.lru_cache(maxsize=1)  # one copy per process
def shipped_package() -> str:
    """The folder shipped to a cluster's workers as the `tiltsweep` package (Ray's py_modules
    names a module after its folder). An installed tiltsweep is one folder; an editable install
    maps its parts from the repository's top-level folders, so they are copied into one."""
    import tiltsweep

    installed = Path(tiltsweep.__file__).parent
    if all((installed / part / "__init__.py").exists() for part in PARTS):
        return str(installed)
    staging = Path(tempfile.mkdtemp(prefix="tiltsweep-ship-")) / "tiltsweep"
    shutil.copytree(installed, staging, ignore=shutil.ignore_patterns("__pycache__"))
    for part in PARTS:
        source = Path(importlib.import_module(f"tiltsweep.{part}").__file__).parent
        shutil.copytree(source, staging / part, ignore=shutil.ignore_patterns("__pycache__"))
    return str(staging)


class ClusterUnreachable(Refused):
    pass


def probe_address(address: str, timeout: float = 3.0) -> None:
    """Fail fast, with a clear message, when nobody listens at a cluster address."""
    if address == "auto":
        return
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if not parsed.hostname or not parsed.port:
        raise ClusterUnreachable(f"{address}: not a Ray address (expected HOST:PORT, ray://HOST:PORT or auto)")
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=timeout).close()
    except OSError as error:
        raise ClusterUnreachable(f"cannot reach a Ray cluster at {address} ({error.strerror or error})") from None


@dataclass
class RaySeconds:
    """Ray's own fixed costs in a sweep: starting (or connecting), and shutting down."""

    startup: float = 0.0
    shutdown: float = 0.0


@contextmanager
def ray_session(address: Optional[str] = None, verbose: bool = False, dashboard: bool = False):
    """Ray for the duration of a sweep; yields RaySeconds, whose `shutdown` is filled in on exit."""
    started = time.perf_counter()
    quiet = dict(log_to_driver=verbose, logging_level=logging.INFO if verbose else logging.ERROR)
    try:
        if address:
            shipped = os.environ.get(CODE_SHIPPED) == "1"  # inside a submitted job: the job carries it
            ray.init(address=address, runtime_env=None if shipped else {"py_modules": [shipped_package()]}, **quiet)
        else:
            # address="local": a Ray of its own, even where another runs on this machine (a bare
            # ray.init() joins RAY_ADDRESS or the latest cluster started here).
            ray.init(address="local", include_dashboard=dashboard, dashboard_host="127.0.0.1", **quiet)
            keep_token_private()
    except (ConnectionError, RuntimeError) as error:
        raise ClusterUnreachable(f"cannot connect to Ray at {address or 'a local instance'}: {error}") from None
    if not verbose:
        # Tune logs every trial failure with its traceback; tiltsweep records them instead
        # (the `error` column, `tiltsweep status`) and keeps the console to one progress line.
        for name in ("ray.tune", "ray.air", "ray.train"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    seconds = RaySeconds(startup=time.perf_counter() - started)
    try:
        yield seconds
    finally:
        stopping = time.perf_counter()
        ray.shutdown()
        seconds.shutdown = time.perf_counter() - stopping


OPEN_RAY = "TILTSWEEP_OPEN_RAY"


class OpenRayRefused(Refused):
    """The local Ray would run without token authentication."""


def refuse_open_local_ray(environ=os.environ) -> None:
    """The local Ray keeps Ray's token authentication: with RAY_AUTH_MODE set to anything but
    `token`, it would admit anyone who reaches this machine, since Ray's servers listen on every
    interface (its GCS binds 0.0.0.0 whatever node address it is given), so it cannot be kept
    to loopback instead. Refused, unless TILTSWEEP_OPEN_RAY=1 says the user means it."""
    mode = environ.get("RAY_AUTH_MODE")
    if mode is not None and mode.lower() != "token" and environ.get(OPEN_RAY) != "1":
        raise OpenRayRefused(f"RAY_AUTH_MODE={mode}: a local Ray without its token would admit anyone who reaches this machine "
                             f"(Ray listens on every interface); unset RAY_AUTH_MODE, or set {OPEN_RAY}=1 if this machine is yours alone")


def keep_token_private() -> None:
    """Ray writes its authentication token readable by every user of the machine (mode 644): the
    key to every local Ray this user starts. Make it the owner's alone (where RAY_AUTH_TOKEN_PATH
    says it is, else ~/.ray/auth_token, as Ray reads it)."""
    token = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        found = token.stat()
        if found.st_uid == os.getuid() and found.st_mode & 0o077:
            token.chmod(0o600)
    except OSError:
        pass  # no token (authentication off), or not ours to change


def trainable(tune_config: dict, packs: dict[str, dict]) -> None:
    """What a Tune trial runs: one pack of grid points, `packs[tune_config["pack"]]`. JAX loads
    here, in the worker: the driver trains nothing and never loads it."""
    from tiltsweep.sweep.run.worker import configure_accelerator, run_pack
    from tiltsweep.trainers.compilation.cache import cache_directory, enable_compile_cache

    pack = packs[tune_config["pack"]]
    configure_accelerator(**pack["resources"])
    enable_compile_cache(cache_directory())
    run_pack(pack, report=tune.report)


def payload_for(pack: Pack, spec: GridSpec, results: ResultsDir, code_version: str) -> dict:
    """What a worker gets to train one pack (plain data, shipped by Ray; run.worker)."""
    return {
        "pack_id": pack.pack_id,
        "base": spec.base,
        "members": [{"trial_id": p.trial_id, "settings": p.settings, "axes": p.axes} for p in pack.points],
        "results_dir": results.location,
        "code_version": code_version,
        "resources": trial_share(spec),
        "on_accelerator": accelerated(spec),
    }


def error_text(trial) -> str:
    """The traceback of a trial's latest failure (the driver's local copy exists when the
    failure callback runs; the storage copy may not yet)."""
    try:
        if trial.error_file:
            return Path(trial.error_file).read_text()
    except OSError:
        pass
    return trial.get_error() or ""


def error_reason(trial) -> str:
    """The trial's latest error in one line, `Type: message`, from the exception Tune kept."""
    import ray.cloudpickle

    try:
        with open(trial.pickled_error_file, "rb") as handle:
            error = ray.cloudpickle.load(handle)
    except Exception:  # noqa: BLE001 - no pickled error, or one that does not load here
        return "the trial failed (its traceback is in the record's `traceback`)"
    return retries.one_line(getattr(error, "cause", None) or error)  # a RayTaskError wraps the worker's own exception


class DriverCallback(tune.Callback):
    """Hands every finished point to the filer and keeps the progress line current."""

    def __init__(self, ledger: Ledger, filer: Filer, progress: Progress, code_version: str, packs: list[Pack], asks: dict, lock=None):
        """packs: what the trials train (their payloads are Ray's to keep, in its object store);
        lock: the run's lock, whose loss (a lease taken over) stops the sweep."""
        self.ledger, self.filer, self.progress, self.code_version, self.lock = ledger, filer, progress, code_version, lock
        self.packs = {pack.pack_id: pack for pack in packs}
        self.filed: set[str] = set()
        self.trouble: Optional[str] = None  # the results directory stopped taking writes: what a write met
        self.asks = asks  # what a trial asks of a node (trial_resources)
        self.idle_since: Optional[float] = None

    def __getstate__(self):
        # Tune pickles its state (callbacks included) for its own restore, which tiltsweep does
        # not use: the results directory is the state. The stream, files and thread stay out of it.
        return {}

    @staticmethod
    def pack_id(trial) -> str:
        return trial.config["pack"]

    def file(self, pack_id: str, trial_ids) -> None:
        """To the filer, once per point."""
        new = [trial_id for trial_id in trial_ids if trial_id not in self.filed]
        self.filed.update(new)
        if new:
            self.filer.file(pack_id, new)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.trouble = self.trouble or result.get("storage_trouble")
        for trial_id in result.get("running", []):  # first, so the line drawn for the finished shows it
            self.progress.trial_started(trial_id)
        self.file(self.pack_id(trial), result.get("finished", []))

    WAIT_BEFORE_SAYING = 10.0  # seconds with trials to start and none running: Ray's own start-up takes a few

    def on_step_end(self, iteration, trials, **info):
        """Say so on the progress line when trials wait for resources and none runs."""
        waiting = not any(t.status == "RUNNING" for t in trials) and any(t.status == "PENDING" for t in trials)
        now = time.monotonic()
        self.idle_since = (self.idle_since or now) if waiting else None
        if self.idle_since is not None and now - self.idle_since >= self.WAIT_BEFORE_SAYING:
            free = ray.available_resources()
            asks = ", ".join(f"{amount:g} {name.upper()}" for name, amount in self.asks.items() if amount)
            has = ", ".join(f"{free.get(name.upper(), 0):g} {name.upper()}" for name, amount in self.asks.items() if amount)
            self.progress.wait_for(f"a trial asks for {asks}; free now: {has}")
        elif self.idle_since is None:
            self.progress.wait_for(None)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.progress.trial_retried(self.pack_id(trial))

    def on_trial_complete(self, iteration, trials, trial, **info):
        pack = self.packs[self.pack_id(trial)]
        self.file(pack.pack_id, [point.trial_id for point in pack.points])

    def on_trial_error(self, iteration, trials, trial, **info):
        """After a pack's last retry: its unfinished points are recorded failed (run.retries, step 5)."""
        pack = self.packs[self.pack_id(trial)]
        results = self.ledger.results
        try:
            book = results.records.read(pack.pack_id)
        except CorruptFile as error:
            self.ledger.quarantine_file(error)
            book = PackRecords(pack.pack_id)
        started, recorded = retries.record_unfinished(book, list(pack.points), self.filed, lambda: error_reason(trial),
                                                      lambda: error_text(trial), self.code_version)
        if recorded:
            try:
                results.records.write(book)
            except OSError as error:
                if not storage_trouble(error):
                    raise
                self.trouble = self.trouble or describe_trouble(error, results)
                return
        self.file(pack.pack_id, [p.trial_id for p in started])

    def trouble_seen(self) -> Optional[str]:
        """What stopped the results directory taking writes, from a worker, this callback or the
        filer, or took the run's lock from it."""
        if self.trouble is None and self.filer.error is not None and storage_trouble(self.filer.error):
            self.trouble = describe_trouble(self.filer.error, self.ledger.results)
        return self.trouble or (self.lock.lost if self.lock is not None else None)


class StopOnStorageTrouble(tune.Stopper):
    """Ends the whole Tune run once the results directory stops taking writes: every trial would
    fail the same way, and retrying them only uses up their retries."""

    def __init__(self, callback: DriverCallback):
        self.callback = callback

    def __call__(self, trial_id, result) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.callback.trouble_seen() is not None


class ResourcesUnmet(Refused):
    pass


def refuse_unmeetable_resources(spec: GridSpec, address: Optional[str]) -> None:
    """Refuse a sweep whose trials ask for more of a resource than any node of the Ray cluster
    has (a trial runs on one node): it would wait forever. Checked before anything is queued."""
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    where = f"the Ray cluster at {address}" if address else "this machine's Ray"
    names = {"cpu": "CPU", "gpu": "GPU", "TPU": "TPU"}
    for name, amount in trial_resources(spec).items():
        most = max((node.get(names[name], 0.0) for node in nodes), default=0.0)
        if amount > most:
            field = "tpu" if name == "TPU" else name
            raise ResourcesUnmet(f"{spec.source}: resources.{field}: each trial asks for {amount:g} {names[name]}, but no node of "
                                 f"{where} has that many (the most on one node: {most:g}); lower it, or run on a cluster that has them (--address)")


@contextmanager
def tune_settings(slots: int):
    """Tune's documented environment switches, set for the sweep's duration (a value the user
    set wins), in the driver, which reads them:
    - TUNE_MAX_PENDING_TRIALS_PG: Tune creates up to 200 trials ahead of the running ones,
      placement groups and all, to drive an autoscaler. On an existing cluster that only delays
      the first trials (~0.8 s for 96 points on 2 CPUs); twice the trials that run at once keeps
      every slot refilled.
    - TUNE_DISABLE_AUTO_CALLBACK_LOGGERS: no per-trial CSV, JSON and TensorBoard files; the
      results live in tiltsweep's records;
    - RAY_AIR_NEW_OUTPUT=0: Tune's classic reporter, which is silent at verbose=0 (the new one
      prints its configuration box even then), so the console keeps to tiltsweep's progress line;
    - TUNE_DISABLE_SIGINT_HANDLER: Ctrl-C is tiltsweep's to handle, as SIGTERM is (run.signals):
      Tune's own handler would end the run as if it had finished."""
    settings = {"TUNE_MAX_PENDING_TRIALS_PG": str(2 * slots), "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "RAY_AIR_NEW_OUTPUT": "0",
                "TUNE_DISABLE_SIGINT_HANDLER": "1"}
    ours = {name: value for name, value in settings.items() if name not in os.environ}
    os.environ.update(ours)
    try:
        yield
    finally:
        for name in ours:
            os.environ.pop(name, None)


def run_points(
    spec: GridSpec, results: ResultsDir, points: list[GridPoint], ledger: Ledger, progress: Progress,
    code_version: str, verbose: bool = False, lock=None,
) -> None:
    """Train `points` on the connected Ray cluster, filing each as it finishes; StorageTrouble
    where the results directory stopped taking writes or the run lost its `lock`."""
    slots = trials_at_once(spec, ray.cluster_resources())
    packs = plan_packs(points, slots, spec.resources.retries, accelerated(spec))
    scratch = results.tune_folder()
    shutil.rmtree(scratch, ignore_errors=True)  # left by a killed run: we hold the lock, so it is stale
    tune_dir = Path(tempfile.mkdtemp(prefix="tune-", dir=ensure_dir(scratch)))
    filer = Filer(ledger, progress.trial_finished)
    callback = DriverCallback(ledger, filer, progress, code_version, packs, trial_resources(spec), lock)
    try:
        with tune_settings(slots):
            sweep_tuner(spec, {pack.pack_id: payload_for(pack, spec, results, code_version) for pack in packs},
                        tune_dir, callback, verbose).fit()
    except Exception as error:
        if not (callback.trouble_seen() or storage_trouble(error)):
            raise
        callback.trouble = callback.trouble or describe_trouble(error, results)
    finally:
        try:
            filer.close()  # files what is left
        except Exception as error:
            if not storage_trouble(error):
                raise
            callback.trouble = callback.trouble or describe_trouble(error, results)
        finally:
            shutil.rmtree(tune_dir, ignore_errors=True)  # Tune's scratch; the records hold what matters
    lost = lock.lost if lock is not None else None  # first: what a lost lock stopped fails in its own ways
    if lost:
        raise StorageTrouble(f"{results}: this run lost its lock ({lost}) and stopped; every finished point "
                             f"is kept: `tiltsweep resume {results}` goes on once no other run holds it")
    if callback.trouble:
        raise StorageTrouble(f"{results}: stopped taking writes ({callback.trouble}); every finished point is kept: "
                             f"free space or make it writable, then `tiltsweep resume {results}`")


def sweep_tuner(spec: GridSpec, packs: dict[str, dict], tune_dir: Path, callback: DriverCallback, verbose: bool) -> tune.Tuner:
    return tune.Tuner(
        # A trial's config is its pack id alone: Tune copies the whole search space once per
        # trial it generates (quadratic in the points), and keeps and saves every trial's config.
        tune.with_resources(tune.with_parameters(trainable, packs=packs), trial_resources(spec)),
        param_space={"pack": tune.grid_search(list(packs))},
        tune_config=tune.TuneConfig(
            reuse_actors=True,
            trial_name_creator=DriverCallback.pack_id,
            trial_dirname_creator=DriverCallback.pack_id,
        ),
        run_config=tune.RunConfig(
            name="sweep",
            storage_path=str(tune_dir),
            failure_config=tune.FailureConfig(max_failures=spec.resources.retries),
            stop=StopOnStorageTrouble(callback),
            verbose=2 if verbose else 0,
            callbacks=[callback],
        ),
    )


def ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def submit_job(address: str, grid_path: Path, out: str, extra_args: list[str]) -> str:
    """Submit `tiltsweep run` as a Ray job; the grid file travels in the job's working_dir."""
    from ray.job_submission import JobSubmissionClient

    try:
        client = JobSubmissionClient(address)
    except Exception as error:  # the client raises bare ConnectionErrors and RuntimeErrors
        raise ClusterUnreachable(f"cannot reach the Ray job server at {address}: {' '.join(str(error).split())[:300]}") from None
    staging = Path(tempfile.mkdtemp(prefix="tiltsweep-submit-"))
    (staging / grid_path.name).write_bytes(grid_path.read_bytes())
    entrypoint = shlex.join(["python", "-m", "tiltsweep", "run", grid_path.name, "--address", "auto", "--out", out, *extra_args])  # run by a shell
    return client.submit_job(
        entrypoint=entrypoint,
        runtime_env={"working_dir": str(staging), "py_modules": [shipped_package()], "env_vars": {CODE_SHIPPED: "1"}},
        metadata={"tool": "tiltsweep", "grid": grid_path.name},
    )
