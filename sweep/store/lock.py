"""One `tiltsweep run` per results directory at a time, on a local disk or on object storage.

- On a local or shared disk: an OS file lock (filelock) on <results>/.lock, held for the run's
  whole life. The operating system frees it when the process ends, however it ends, so a killed
  run's lock is taken over by the next one and never has to be judged stale.
- On object storage, where no process can hold a file: a lease, the object <results>/.lock that
  names its owner and is created only where none exists (S3's If-None-Match, GCS's generation
  precondition). Its owner renews it every LEASE_SECONDS / 3 (a write that succeeds only on the
  version it last wrote: If-Match, or the generation), and drops it at the end. A lease not renewed
  for LEASE_SECONDS is expired: a later run takes it over, with the same precondition, so that of
  two runs at most one gets it. One that stopped renewing (its run was killed) is waited for
  until it expires; one renewed recently refuses the run. Its age is the store's own clock (the
  object's time of writing against the time the store answers with), so hosts need not agree on
  the time. A run whose lease is taken from it (it stopped renewing, paused past LEASE_SECONDS)
  learns it at its next renewal (`lost`) and stops.

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
        self.store = StoredObject.of(files, name)
        self.seconds = lease_seconds()
        self.version: Optional[str] = None  # of the lease as this run last wrote it
        self.claim: dict = {}
        self.lost: Optional[str] = None  # why the lease is no longer this run's
        self.stopping = threading.Event()
        self.renewer: Optional[threading.Thread] = None

    def acquire(self, timeout: float = 1.0, on_wait: Callable[[str], None] = lambda message: None) -> None:
        """Take the lease: create it, or take over an expired one; wait for one whose holder
        stopped renewing it (killed) to expire; LockHeld naming a holder that renews it."""
        self.claim = {**me(), "lease_seconds": self.seconds}
        body = json.dumps(self.claim).encode()
        said = False
        while True:
            found = self.store.read()
            if found is None:
                self.version = self.store.create(body)
            else:
                data, version, age = found
                owner = parse(data)
                if age > float(owner.get("lease_seconds", self.seconds)):
                    self.version = self.store.replace(body, version)  # None: another run took it first
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
        self.stopping.clear()
        self.renewer = threading.Thread(target=self._renew, name="tiltsweep-lease", daemon=True)
        self.renewer.start()

    def renewal(self, owner: Optional[dict] = None) -> float:
        """Seconds between an owner's renewals."""
        return float((owner or {}).get("lease_seconds", self.seconds)) / 3

    def _renew(self) -> None:
        last = time.monotonic()
        while not self.stopping.wait(self.renewal()):
            try:
                version = self.store.replace(json.dumps({**self.claim, "renewed_at": time.time()}).encode(), self.version)
            except Exception as error:  # noqa: BLE001 - the store out of reach: try again, until the lease would run out
                if time.monotonic() - last > self.seconds:
                    self.lost = f"the lease on {self.shown} could not be renewed for {self.seconds:.0f} s ({type(error).__name__}: {error})"
                    return
                continue
            if version is None:
                found = self.store.read()
                holder = describe(parse(found[0])) if found else "nobody"
                self.lost = f"the lease on {self.shown} was taken over (held now by {holder})"
                return
            self.version, last = version, time.monotonic()

    def release(self) -> None:
        if self.renewer is None:
            return
        self.stopping.set()
        self.renewer.join()
        self.renewer = None
        if self.lost is None and self.version is not None:
            try:
                self.store.delete(self.version)
            except Exception:  # noqa: BLE001 - left to expire: the next run waits for it
                pass
        self.version = None

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
    seconds by the store's clock) or None; create and replace -> the new version, or None where the
    condition failed."""

    @staticmethod
    def of(files, name: str) -> "StoredObject":
        """The object `name` of a results directory on object storage; a refusal naming the extra
        to install where the store's client is not there."""
        scheme, _, rest = files.show(name).partition("://")
        bucket, _, key = rest.partition("/")
        try:
            return S3Object(bucket, key) if scheme == "s3" else GcsObject(bucket, key)
        except ImportError as error:
            extra = "s3" if scheme == "s3" else "gcs"
            raise Unreachable(f"{files.show()}: its run lock needs {error.name} (pip install 'tiltsweep[{extra}]')") from None


class S3Object(StoredObject):
    """Through boto3 (AWS_ENDPOINT_URL and the other standard variables): If-None-Match and
    If-Match on PutObject and DeleteObject."""

    def __init__(self, bucket: str, key: str):
        import boto3
        from botocore.exceptions import ClientError

        self.bucket, self.key, self.client, self.ClientError = bucket, key, boto3.client("s3"), ClientError

    def failed_condition(self, error) -> bool:
        return error.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404", "412", "409")

    def read(self):
        try:
            found = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except self.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        now = parsedate_to_datetime(found["ResponseMetadata"]["HTTPHeaders"]["date"])
        return found["Body"].read(), found["ETag"], (now - found["LastModified"]).total_seconds()

    def _put(self, body: bytes, **condition) -> Optional[str]:
        try:
            return self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body, **condition)["ETag"]
        except self.ClientError as error:
            if self.failed_condition(error):
                return None
            raise

    def create(self, body: bytes) -> Optional[str]:
        return self._put(body, IfNoneMatch="*")

    def replace(self, body: bytes, version: str) -> Optional[str]:
        return self._put(body, IfMatch=version)

    def delete(self, version: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=version)


class GcsObject(StoredObject):
    """Through google-cloud-storage (its own credentials, STORAGE_EMULATOR_HOST for an emulator):
    generation preconditions. Its age is by this machine's clock against the object's time."""

    def __init__(self, bucket: str, key: str):
        from google.api_core.exceptions import NotFound, PreconditionFailed
        from google.cloud import storage

        self.blob = storage.Client().bucket(bucket).blob(key)
        self.NotFound, self.PreconditionFailed = NotFound, PreconditionFailed

    def read(self):
        try:
            self.blob.reload()
            data = self.blob.download_as_bytes(if_generation_match=self.blob.generation)
        except (self.NotFound, self.PreconditionFailed):
            return None
        return data, str(self.blob.generation), (datetime.now(timezone.utc) - self.blob.updated).total_seconds()

    def _upload(self, body: bytes, generation: int) -> Optional[str]:
        try:
            self.blob.upload_from_string(body, if_generation_match=generation)
        except (self.NotFound, self.PreconditionFailed):
            return None
        return str(self.blob.generation)

    def create(self, body: bytes) -> Optional[str]:
        return self._upload(body, 0)

    def replace(self, body: bytes, version: str) -> Optional[str]:
        return self._upload(body, int(version))

    def delete(self, version: str) -> None:
        self.blob.delete(if_generation_match=int(version))
