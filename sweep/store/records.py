"""Trial records: what each point's training left, one file per pack (records/<pack>.msgpack).

A pack's file is two msgpack objects: a header (the pack id; how often each of its points started
training and which worker, host:pid, started it last; each record's status, error, time of
writing and number of evaluations; the size and sha256 of what follows), then the list of the
records of the points that finished (one per point: a retry replaces it). Its worker rewrites it
whole as each of its points starts and finishes. Counting points (`tiltsweep status`, a sync)
decodes the headers alone, after the checksum of what follows is checked on a disk; on object
storage, where reading every file whole would cost a sweep's records in transfers, only its size.

A point may have records in more than one pack (it failed in one run and was retried in a pack of
the next). The record that counts is the one that ends it (completed or diverged) if any, else the
latest: `precedence`.
"""

from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Literal, Optional

import msgpack
from pydantic import BaseModel, ConfigDict, ValidationError

from tiltsweep.sweep.store import layout
from tiltsweep.sweep.store.files import Files, for_each

FINAL_STATUSES = ("completed", "diverged")  # never run again; `failed` is retried by the next run
HEADER_BYTES = 16 * 1024  # read at a time to find a pack file's header (a pack of 64 points: ~5 KB)


class TrialRecord(BaseModel):
    """What one point's training left: written by the worker that trained it (or, for a point
    whose every attempt crashed, by the driver), read by the ledger and by analysis."""

    model_config = ConfigDict(extra="ignore")

    trial_id: str
    status: Literal["completed", "diverged", "failed"]
    config: dict
    history: list[dict] = []  # one row per evaluation: step, epoch, metrics
    steps: int = 0
    epochs: int = 0
    wall_seconds: float = 0.0
    resumed_from_epoch: int = 0
    attempts: int = 0  # starts of its training in its pack
    trained_with: int = 1  # points in the vmapped block it trained in (itself included)
    code_version: str = ""
    error: str = ""
    traceback: str = ""
    finished_at: str = ""  # local time, ISO 8601
    written: float = 0.0  # time.time() when written: orders one point's records across packs
    host: str = ""  # host:pid of the worker
    # XLA compilations of the training loop in that worker process so far: 1 while every point
    # it trained had the same shapes (workers are reused across trials).
    worker_compilations: int = 0

    @classmethod
    def written_now(cls, trial_id: str, status: str, config: dict, attempts: int, code_version: str, **fields) -> "TrialRecord":
        """A record made now: `finished_at` (local time) and `written` are this moment."""
        return cls(trial_id=trial_id, status=status, config=config, attempts=attempts, code_version=code_version,
                   finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), written=time.time(), **fields)

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    def precedence(self) -> tuple:
        return (self.final, self.written)


@dataclass(frozen=True)
class Outcome:
    """What the header of a pack's file says of one of its records: enough to count the point."""

    pack_id: str
    status: str
    error: str
    written: float
    evaluations: int  # rows of its history

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    def precedence(self) -> tuple:
        return (self.final, self.written)


@dataclass
class PackRecords:
    """The content of one pack's file (module docstring); `outcomes` where only its header was read."""

    pack_id: str
    attempts: dict[str, int] = field(default_factory=dict)
    workers: dict[str, str] = field(default_factory=dict)
    records: dict[str, TrialRecord] = field(default_factory=dict)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    dumped: dict[str, tuple] = field(default_factory=dict, repr=False)  # trial id -> (record, its plain form)

    def to_bytes(self) -> bytes:
        """The file's bytes; a record's plain form is made once, as the file is rewritten after every point."""
        kept = lambda t, r: t in self.dumped and self.dumped[t][0] is r
        self.dumped = {t: self.dumped[t] if kept(t, r) else (r, r.model_dump()) for t, r in self.records.items()}
        body = msgpack.packb([plain for _, plain in self.dumped.values()], use_bin_type=True)
        index = {t: [r.status, r.error, r.written, len(r.history)] for t, r in self.records.items()}
        header = {"pack_id": self.pack_id, "attempts": self.attempts, "workers": self.workers, "index": index,
                  "body": {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}}
        return msgpack.packb(header, use_bin_type=True) + body


def with_outcomes(pack: PackRecords, header: dict) -> PackRecords:
    """`pack` with what its file's header says: starts, workers and each record's outcome."""
    pack.attempts, pack.workers = dict(header["attempts"]), dict(header["workers"])
    pack.outcomes = {t: Outcome(pack.pack_id, *entry) for t, entry in header["index"].items()}
    return pack


class CorruptFile(ValueError):
    """A file of the results directory that cannot be read; `name` is its path in the directory."""

    def __init__(self, name: str, shown: str, reason: str):
        self.name, self.reason = name, reason
        super().__init__(f"{shown}: {reason}")


def counting(candidates, rank: Callable) -> dict:
    """trial id -> the one of its (trial id, candidate) pairs that counts: the highest rank."""
    found: dict = {}
    for trial_id, candidate in candidates:
        if trial_id not in found or rank(candidate) > rank(found[trial_id]):
            found[trial_id] = candidate
    return found


class PackFiles:
    """The records/ folder."""

    def __init__(self, files: Files):
        self.files = files

    def ids(self) -> list[str]:
        return [name.removesuffix(".msgpack") for name in self.files.names(layout.RECORDS, ".msgpack")]

    def read(self, pack_id: str, only: Optional[Iterable[str]] = None, records: bool = True) -> PackRecords:
        """The pack's records (none yet if it has no file), or `only` those of these points, or with
        records=False only its header's outcomes (on a disk, the records' checksum checked too; on
        object storage, the file's first bytes read and its size checked against the header's);
        CorruptFile if the file is not whole."""
        name = layout.pack_records(pack_id)
        wanted = None if only is None else set(only)
        try:
            if not records and not self.files.on_disk:
                return with_outcomes(PackRecords(pack_id), self.header(name))
            data = self.files.read(name)
            stream = io.BytesIO(data)  # shares `data`, as a memoryview does: a long sweep's pack file takes MBs
            header_reader = msgpack.Unpacker(stream, raw=False, strict_map_key=False)
            header = header_reader.unpack()
            body = memoryview(data)[header_reader.tell():]
            if len(body) != header["body"]["size"] or hashlib.sha256(body).hexdigest() != header["body"]["sha256"]:
                raise ValueError("records do not match their checksum")
            if not records:
                return with_outcomes(PackRecords(pack_id), header)
            pack = PackRecords(pack_id, dict(header["attempts"]), dict(header["workers"]))
            stream.seek(len(data) - len(body))
            reader = msgpack.Unpacker(stream, raw=False, strict_map_key=False)
            for _ in range(reader.read_array_header()):  # one record decoded at a time
                plain = reader.unpack()
                if wanted is None or plain["trial_id"] in wanted:
                    pack.records[plain["trial_id"]] = TrialRecord.model_validate(plain)
            return pack
        except FileNotFoundError:
            return PackRecords(pack_id)
        except (ValueError, TypeError, KeyError, ValidationError, msgpack.UnpackException) as error:
            reason = f"not a pack of trial records ({type(error).__name__}: {error})"[:300]
            raise CorruptFile(name, self.files.show(name), reason) from None

    def header(self, name: str) -> dict:
        """A pack file's header, read HEADER_BYTES at a time; ValueError where the file's size is
        not the header's and the body's it announces (a truncated file)."""
        with self.files.open(name) as handle:
            unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=0)
            while True:
                chunk = handle.read(HEADER_BYTES)
                unpacker.feed(chunk)
                try:
                    header = unpacker.unpack()
                    break
                except msgpack.OutOfData:
                    if not chunk:
                        raise ValueError("the file ends inside its header") from None
            size = handle.seek(0, 2)
        if size != unpacker.tell() + header["body"]["size"]:
            raise ValueError(f"{size} bytes, where its header announces {unpacker.tell() + header['body']['size']}")
        return header

    def counts_evaluations(self, pack_id: str) -> bool:
        """Whether the pack's header counts each record's evaluations, as tiltsweep 0.1 wrote it
        (an unreadable or missing file says nothing against it)."""
        try:
            return all(len(entry) == 4 for entry in self.header(layout.pack_records(pack_id))["index"].values())
        except (OSError, ValueError, TypeError, KeyError, msgpack.UnpackException):
            return True

    def write(self, pack: PackRecords) -> None:
        self.files.write(layout.pack_records(pack.pack_id), pack.to_bytes())

    def all(self, on_corrupt: Callable[[CorruptFile], None]) -> dict[str, tuple[str, TrialRecord]]:
        """trial id -> (pack id, record) of every recorded point; an unreadable pack file goes to
        on_corrupt and counts as no records."""
        candidates = ((t, (pack.pack_id, r)) for pack in self._packs(on_corrupt, records=True) for t, r in pack.records.items())
        return counting(candidates, rank=lambda held: held[1].precedence())

    def outcomes(self, on_corrupt: Callable[[CorruptFile], None]) -> dict[str, Outcome]:
        """trial id -> the outcome of its record that counts, from the packs' headers (fast)."""
        candidates = (item for pack in self._packs(on_corrupt, records=False) for item in pack.outcomes.items())
        return counting(candidates, rank=Outcome.precedence)

    def of(self, trial_id: str) -> Optional[tuple[str, TrialRecord]]:
        """(pack id, record) of one point's record that counts, reading one pack's records; None
        if it has none (or its file became unreadable: the next run's sync quarantines it)."""
        outcome = self.outcomes(on_corrupt=lambda error: None).get(trial_id)
        if outcome is None:
            return None
        try:
            return outcome.pack_id, self.read(outcome.pack_id, only=[trial_id]).records[trial_id]
        except CorruptFile:
            return None

    def _packs(self, on_corrupt: Callable[[CorruptFile], None], records: bool) -> Iterator[PackRecords]:
        """Every pack's records (or headers), several read at once where the files are far
        (object storage: store.files' `parallel`)."""
        def read(pack_id: str):
            try:
                return self.read(pack_id, records=records)
            except CorruptFile as error:
                return error

        for found in for_each(self.files, read, self.ids()):
            if isinstance(found, CorruptFile):
                on_corrupt(found)
            else:
                yield found
