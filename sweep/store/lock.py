"""One `tiltsweep run` per results directory at a time, on a local disk or on object storage.

- On a local or shared disk: an OS file lock (filelock) on <results>/.lock, held for the run's
  whole life. The operating system frees it when the process ends, however it ends, so a killed
  run's lock is taken over by the next one and never has to be judged stale.
- On object storage, where no process can hold a file: a lease, the object <results>/.lock that
  names its owner and is created only where none exists (S3's If-None-Match, GCS's generation
  precondition). Its owner renews it every LEASE_SECONDS / 3 (a write that succeeds only on the
  version it last wrote: If-Match, or the generation), retries within seconds when a renewal
  fails, and drops it at the end. A lease not renewed for LEASE_SECONDS is expired: a later run
  takes it over, with the same precondition, so that of two runs at most one gets it. One not
  renewed for 2/3 of LEASE_SECONDS (its run was killed) is waited for until it expires; one
  renewed more recently refuses the run. Its holder counts itself `lost` once it has not renewed
  for those 2/3, or finds that another run took the lease, and stops: it has the last third to
  stop before another run can take over (there is no fencing beyond this: a run paused for
  longer, by a debugger or a suspended VM, learns it only when it wakes). The lease's age is by
  the store's clock on S3 (the object's time of writing against the Date of the store's answer),
  by the hosts' clocks against the object's on GCS. A run refuses a store that does not honour
  the conditions (it tries them once on taking the lease).

Who holds the lock (host, pid, command, since when) is written with it (.lock.owner on disk, the
lease itself on object storage), so that a second run is refused naming the holder.
TILTSWEEP_LEASE_SECONDS sets the lease's length (default 60).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Callable, Optional

from filelock import FileLock, Timeout

from tiltsweep.sweep.errors import Refused
from tiltsweep.sweep.store.files import Unreachable, atomic_write


class LockHeld(Refused):
    pass


def describe(owner: dict) -> str:
    if not owner:
        return "its owner did not say who it is"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(owner.get("locked_at", 0))))
    return f"pid {owner.get('pid')} on {owner.get('host')} since {since} ({owner.get('command', '?')})"


def me() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "locked_at": time.time(), "command": " ".join(sys.argv)}


class RunLock:
    """The lock of a results directory on a disk."""

    lost: Optional[str] = None  # an OS lock is never taken from its holder

    def __init__(self, path: Path, owner_path: Path):
        self.path, self.owner_path = Path(path), Path(owner_path)
        self.lock: Optional[FileLock] = None

    def acquire(self, timeout: float = 1.0, on_wait: Callable[[str], None] = lambda message: None) -> None:
        """Take the lock, waiting up to `timeout` seconds (another process may be probing it:
        `holder`); LockHeld naming the holder if another run has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.path)
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise LockHeld(f"{self.path.parent} is in use by another tiltsweep run: {describe(self.owner())}") from None
        try:
            atomic_write(self.owner_path, json.dumps(me()).encode())
        except BaseException:
            lock.release()
            raise
        self.lock = lock

    def release(self) -> None:
        if self.lock is None:
            return
        try:
            self.owner_path.unlink(missing_ok=True)
        except OSError:  # a directory turned read-only: the next run overwrites it
            pass
        self.lock.release()
        self.lock = None

    def owner(self) -> dict:
        try:
            return json.loads(self.owner_path.read_text())
        except (OSError, ValueError):
            return {}

    def holder(self) -> Optional[dict]:
        """The owner of the lock if another process holds it now, else None. Where the lock cannot
        be tried (a directory this user may not write), who last wrote that they hold it."""
        if not self.path.exists():
            return None
        probe = FileLock(self.path)
        try:
            probe.acquire(timeout=0)
        except Timeout:
            return self.owner()
        except OSError:
            return self.owner() if self.owner_path.exists() else None
        probe.release()
        return None


def lease_seconds() -> float:
    return float(os.environ.get("TILTSWEEP_LEASE_SECONDS") or 60)


class Lease:
    """The lock of a results directory on object storage (module docstring)."""

    def __init__(self, files, name: str):
        self.shown = files.show(name)
        self.seconds = lease_seconds()
        self.store = StoredObject.of(files, name, timeout=max(2.0, self.seconds / 6))
        self.version: Optional[str] = None  # of the lease as this run last wrote it
        self.claim: dict = {}
        self.written = b""  # the lease as this run last sent it
        self.renewed = 0.0  # time.monotonic() when the last write that held was sent
        self.failure: Optional[Exception] = None  # what the latest renewal met, if it failed
        self.why_lost: Optional[str] = None
        self.stopping = threading.Event()
        self.renewer: Optional[threading.Thread] = None

    def acquire(self, timeout: float = 1.0, on_wait: Callable[[str], None] = lambda message: None) -> None:
        """Take the lease: create it, or take over an expired one; wait for one whose holder
        stopped renewing it (killed) to expire; LockHeld naming a holder that renews it;
        Unreachable where the store is out of reach or ignores the conditions that keep two runs
        apart."""
        self.claim = {**me(), "lease_seconds": self.seconds, "token": uuid.uuid4().hex}
        self.why_lost, said = None, False
        while True:
            found = self.store.read()
            sent = time.monotonic()
            if found is None:
                self.version = self.write(self.store.create)
            else:
                data, version, age = found
                owner = parse(data)
                if age > float(owner.get("lease_seconds", self.seconds)):
                    self.version = self.write(self.store.replace, version)  # None: another run took it first
                elif age > 2 * self.renewal(owner):
                    if not said:
                        on_wait(f"waiting for the lease of {describe(owner)} on {self.shown}, not renewed for {age:.0f} s, to run out")
                        said = True
                    time.sleep(max(0.2, min(self.renewal(owner), float(owner.get("lease_seconds", self.seconds)) - age)))
                    continue
                else:
                    raise LockHeld(f"{self.shown.rsplit('/', 1)[0]} is in use by another tiltsweep run: {describe(owner)} "
                                   f"(its lease renewed {age:.0f} s ago)")
            if self.version is not None:
                break
        self.renewed = sent
        if not self.store.keeps_conditions(self.written):
            self.release()
            raise Unreachable(f"{self.shown.rsplit('/', 1)[0]}: this store ignores conditional writes (If-None-Match, If-Match), "
                              f"which keep two runs of one results directory apart; keep results on a store that honours "
                              f"them (AWS S3, GCS, MinIO since 2024) or on a disk")
        self.stopping.clear()
        self.renewer = threading.Thread(target=self._renew, name="tiltsweep-lease", daemon=True)
        self.renewer.start()

    def renewal(self, owner: Optional[dict] = None) -> float:
        """Seconds between an owner's renewals."""
        return float((owner or {}).get("lease_seconds", self.seconds)) / 3

    def write(self, put: Callable[..., Optional[str]], *condition: str) -> Optional[str]:
        """put(this run's claim, *condition) -> the lease's new version, or None where another run
        wrote it. A condition that fails because this run's own write went through (a request
        retried after its answer was lost) is told apart by the lease read back, which carries
        this run's token."""
        self.written = json.dumps({**self.claim, "renewed_at": time.time()}).encode()
        version = put(self.written, *condition)
        if version is None:
            found = self.store.read()
            if found is not None and parse(found[0]).get("token") == self.claim["token"]:
                return found[1]
        return version

    @property
    def lost(self) -> Optional[str]:
        """Why the lease is no longer this run's, else None: another run took it, or it was not
        renewed for two thirds of its length. From then on another run may take it over once it
        runs out, so the run has the last third to stop before anyone else writes."""
        unrenewed = time.monotonic() - self.renewed
        if self.why_lost is None and self.renewer is not None and unrenewed > self.seconds - self.renewal():
            met = f" ({type(self.failure).__name__}: {self.failure})" if self.failure else ""
            self.why_lost = f"the lease on {self.shown} could not be renewed for {unrenewed:.0f} s{met}"
        return self.why_lost

    def renew(self) -> None:
        """Renew the lease once; sets `lost` where another run holds it now."""
        sent = time.monotonic()
        try:
            version = self.write(self.store.replace, self.version)
            found = self.store.read() if version is None else None
        except Unreachable as error:  # out of reach: `lost` once too long
            self.failure = error
            return
        if version is None:
            self.why_lost = f"the lease on {self.shown} was taken over (held now by {describe(parse(found[0])) if found else 'nobody'})"
            return
        self.version, self.renewed, self.failure = version, sent, None

    def _renew(self) -> None:
        retry = max(0.5, min(2.0, self.renewal() / 5))  # soon after a failure: the lease must not run out
        while not self.stopping.wait(retry if self.failure else self.renewal()):
            self.renew()
            if self.lost:
                return

    def release(self) -> None:
        """Stop renewing, and delete the lease where it is still this run's: not taken over (a
        renewal sent before the run counted itself lost may have landed since)."""
        if self.renewer is not None:
            self.stopping.set()
            self.renewer.join()
            self.renewer = None
        token, self.version = self.claim.get("token"), None
        try:
            found = self.store.read() if token else None
            if found is not None and parse(found[0]).get("token") == token:
                self.store.delete(found[1])
        except Unreachable:  # left to expire: the next run waits for it
            pass

    def owner(self) -> dict:
        found = self.store.read()
        return parse(found[0]) if found else {}

    def holder(self) -> Optional[dict]:
        """The owner of a lease that is renewed (its run alive), else None (no lease, an expired one,
        or one whose holder stopped renewing it: a run waits for that one)."""
        found = self.store.read()
        if found is None:
            return None
        owner = parse(found[0])
        return owner if found[2] <= 2 * self.renewal(owner) else None


def parse(data: bytes) -> dict:
    try:
        owner = json.loads(data)
        return owner if isinstance(owner, dict) else {}
    except ValueError:
        return {}


class StoredObject:
    """One object, written only on conditions the store checks: `create` where none exists,
    `replace` and `delete` where it is still the version given. read() -> (bytes, version, age in
    seconds) or None; create and replace -> the new version, or None where the condition failed.
    Any other failure (out of reach, access denied, timed out) is Unreachable."""

    @staticmethod
    def of(files, name: str, timeout: float) -> "StoredObject":
        """The object `name` of a results directory on object storage, its requests given up after
        `timeout` seconds; a refusal naming the extra to install where the store's client is not
        there."""
        scheme, _, rest = files.show(name).partition("://")
        bucket, _, key = rest.partition("/")
        client, extra = ("boto3", "s3") if scheme == "s3" else ("google-cloud-storage", "gcs")
        try:
            return S3Object(bucket, key, timeout) if scheme == "s3" else GcsObject(bucket, key, timeout)
        except ImportError:
            raise Unreachable(f"{files.show()}: a results directory on {scheme}:// needs {client} for its run lock "
                              f"(pip install 'tiltsweep[{extra}]')") from None

    def keeps_conditions(self, body: bytes) -> bool:
        """Whether the store refuses writes whose condition fails; `body` is the object as it is."""
        return True


class S3Object(StoredObject):
    """Through boto3 (AWS_ENDPOINT_URL and the other standard variables): If-None-Match and
    If-Match on PutObject and DeleteObject. Its age is by the store's clock: the object's time of
    writing against the Date of the store's answer."""

    FAILED_CONDITION = ("PreconditionFailed", "412")
    CONFLICT = ("ConditionalRequestConflict", "409")  # a concurrent conditional write: S3 asks to retry

    def __init__(self, bucket: str, key: str, timeout: float):
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        config = Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 2, "mode": "standard"})
        self.bucket, self.key, self.client = bucket, key, boto3.client("s3", config=config)
        self.ClientError, self.BotoCoreError = ClientError, BotoCoreError

    def call(self, operation: str, **arguments):
        """client.<operation> on this object; None where a write's condition failed or the object
        is missing; Unreachable for anything else."""
        for attempt in range(5):
            try:
                return getattr(self.client, operation)(Bucket=self.bucket, Key=self.key, **arguments)
            except self.ClientError as error:
                code = error.response.get("Error", {}).get("Code")
                if code in self.FAILED_CONDITION or code in ("NoSuchKey", "404"):
                    return None
                if code not in self.CONFLICT or attempt == 4:
                    raise Unreachable(f"s3://{self.bucket}/{self.key}: {code}: {error.response.get('Error', {}).get('Message', error)}") from None
            except self.BotoCoreError as error:
                raise Unreachable(f"s3://{self.bucket}/{self.key}: {error}") from None
            time.sleep(0.2 * (attempt + 1))

    def read(self):
        found = self.call("get_object")
        if found is None:
            return None
        now = parsedate_to_datetime(found["ResponseMetadata"]["HTTPHeaders"]["date"])
        return found["Body"].read(), found["ETag"], (now - found["LastModified"]).total_seconds()

    def create(self, body: bytes) -> Optional[str]:
        return (self.call("put_object", Body=body, IfNoneMatch="*") or {}).get("ETag")

    def replace(self, body: bytes, version: str) -> Optional[str]:
        return (self.call("put_object", Body=body, IfMatch=version) or {}).get("ETag")

    def delete(self, version: str) -> None:
        self.call("delete_object", IfMatch=version)

    def keeps_conditions(self, body: bytes) -> bool:
        """Some S3-compatible stores ignore If-None-Match and If-Match. Both are tried on the
        object as it is, rewriting the same bytes (the same ETag) where they are ignored."""
        return self.create(body) is None and self.replace(body, '"00000000000000000000000000000000"') is None


class GcsObject(StoredObject):
    """Through google-cloud-storage (its own credentials, STORAGE_EMULATOR_HOST for an emulator):
    generation preconditions, which GCS always honours. Its age is by this machine's clock against
    the object's time of writing: the hosts' clocks must agree to within a few seconds (NTP)."""

    def __init__(self, bucket: str, key: str, timeout: float):
        from google.api_core.exceptions import GoogleAPICallError, NotFound, PreconditionFailed
        from google.auth.exceptions import GoogleAuthError
        from google.cloud import storage

        self.blob, self.timeout = storage.Client().bucket(bucket).blob(key), timeout
        self.missing = (NotFound, PreconditionFailed)
        self.trouble = (GoogleAPICallError, GoogleAuthError, OSError)

    @contextmanager
    def answers(self):
        """A failed precondition or a missing object as they are (self.missing); anything else
        as Unreachable."""
        try:
            yield
        except self.missing:
            raise
        except self.trouble as error:
            raise Unreachable(f"gs://{self.blob.bucket.name}/{self.blob.name}: {type(error).__name__}: {error}") from None

    def read(self):
        try:
            with self.answers():
                self.blob.reload(timeout=self.timeout)
                generation, updated = self.blob.generation, self.blob.updated  # the download may forget them
                data = self.blob.download_as_bytes(if_generation_match=generation, timeout=self.timeout)
        except self.missing:
            return None
        return data, str(generation), (datetime.now(timezone.utc) - updated).total_seconds()

    def _upload(self, body: bytes, generation: int) -> Optional[str]:
        try:
            with self.answers():
                self.blob.upload_from_string(body, if_generation_match=generation, timeout=self.timeout)
        except self.missing:
            return None
        return str(self.blob.generation)

    def create(self, body: bytes) -> Optional[str]:
        return self._upload(body, 0)

    def replace(self, body: bytes, version: str) -> Optional[str]:
        return self._upload(body, int(version))

    def delete(self, version: str) -> None:
        try:
            with self.answers():
                self.blob.delete(if_generation_match=int(version), timeout=self.timeout)
        except self.missing:
            pass
