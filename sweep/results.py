"""The results directory of one sweep, the source of truth, and the one module that reads and
writes its files (Parquet included):

    <root>/grid.yaml                  the grid as submitted
    <root>/sweep.json                 what the sweep is: its name, axes, sub-grids and points (each
                                      point's trial id and axis values), and the grid file's origin
    <root>/records/<pack>.msgpack     the trial records of one pack (sweep.packs), rewritten by its
                                      worker as each of its points starts and finishes
    <root>/summary.parquet/<pack>.parquet  a row for each point recorded in that pack (sweep.ledger)
    <root>/curves.parquet/<pack>.parquet   the curves of the points recorded in that pack
    <root>/checkpoints/<id>/epoch-<n>.ckpt  the latest train states of an unfinished point
    <root>/states/<pack>.states       the final states its points keep (and epoch-<n> states with
                                      training.keep_checkpoints), for `tiltsweep interpolate`
    <root>/traces/<trial>.parquet     one finished point replayed densely (`tiltsweep trace`)
    <root>/refinements.json           the points `tiltsweep refine` added, round by round
    <root>/quarantine/                unreadable files, moved aside (never deleted), with log.jsonl
    <root>/figures/                   what `tiltsweep plot` draws

Every file is written atomically (sweep.atomic). A checkpoint file is sha256(payload) followed
by the payload, so a truncated or overwritten checkpoint is detected before it is used.

A point may have records in more than one pack file (it failed in one run and was retried in
a pack of the next). Its record is the one that ends it (completed or diverged) if any, else its
latest: `TrialRecord.precedence`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Optional

import msgpack
from pydantic import BaseModel, ConfigDict, ValidationError

from tiltsweep.sweep.atomic import atomic_write

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
# pandas and pyarrow are imported where a table is made or read: `tiltsweep status` reads at
# most Parquet footers, and starts in half the time without them.

CHECKPOINTS_KEPT = 2
FINAL_STATUSES = ("completed", "diverged")  # never run again; `failed` is retried by the next run


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
    evaluations: Optional[int] = None  # rows of its history (None in files written before it was kept)

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    def precedence(self) -> tuple:
        return (self.final, self.written)


@dataclass
class PackRecords:
    """The content of records/<pack_id>.msgpack: how often each of the pack's points started
    training and which worker (host:pid) started it last, and the records of those that finished
    (one per point: a retry replaces it).

    The file is two msgpack objects: a header (the pack id, attempts, workers, each record's
    status, error, time of writing and number of evaluations, and the size and sha256 of what
    follows), then the list of records. Counting points (`tiltsweep status`), and checking that
    the pack's tables hold its points' rows, decodes the header alone."""

    pack_id: str
    attempts: dict[str, int] = field(default_factory=dict)
    workers: dict[str, str] = field(default_factory=dict)
    records: dict[str, TrialRecord] = field(default_factory=dict)
    outcomes: dict[str, Outcome] = field(default_factory=dict)  # from the header, when the records were not decoded
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


def counting(candidates, rank: Callable) -> dict:
    """trial id -> the one of its (trial id, candidate) pairs that counts: the highest rank."""
    found: dict = {}
    for trial_id, candidate in candidates:
        if trial_id not in found or rank(candidate) > rank(found[trial_id]):
            found[trial_id] = candidate
    return found


class CorruptFile(ValueError):
    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class SweepDescription:
    """What sweep.json says a sweep is, so that nobody after the run parses its grid file."""

    name: str
    axes: dict[str, list]  # column -> values, in the grid file's order (over all sub-grids)
    subgrids: list[dict]  # {"axes": {column: values}, "trial_ids": [...]} per sub-grid
    points: dict[str, dict[str, Any]]  # trial id -> {column: value}, in grid order
    # trial id -> the other combinations of the grid's values its training stands for (amplitude 1
    # at other periods: sweep.identity); analysis draws its row in each of their cells too
    shared: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # trial id -> the ids its combinations had when the identity kept settings amplitude 1 makes
    # irrelevant (only where they differ): their records are adopted, never trained again
    former: dict[str, list[str]] = field(default_factory=dict)


def checkpoint_name(epoch: int) -> str:
    """epoch-<n>, zero-padded so that names sort by epoch."""
    return f"epoch-{epoch:012d}"


def checksummed(payload: bytes) -> bytes:
    return hashlib.sha256(payload).digest() + payload


class ResultsDir:
    def __init__(self, root):
        self.root = Path(root).expanduser().resolve()

    grid_file = property(lambda self: self.root / "grid.yaml")
    sweep_file = property(lambda self: self.root / "sweep.json")
    summary_dir = property(lambda self: self.root / "summary.parquet")
    curves_dir = property(lambda self: self.root / "curves.parquet")
    records_dir = property(lambda self: self.root / "records")
    checkpoints_dir = property(lambda self: self.root / "checkpoints")
    quarantine_dir = property(lambda self: self.root / "quarantine")
    figures_dir = property(lambda self: self.root / "figures")
    lock_path = property(lambda self: self.root / ".lock")
    states_dir = property(lambda self: self.root / "states")
    traces_dir = property(lambda self: self.root / "traces")
    refinements_file = property(lambda self: self.root / "refinements.json")

    def exists(self) -> bool:
        return self.grid_file.is_file()

    # --- what the sweep is ------------------------------------------------------------------------

    def save_grid(self, text: str, source: Path, description: SweepDescription) -> None:
        atomic_write(self.grid_file, text.encode())
        origin = {"source": str(Path(source).resolve()), "base_dir": str(Path(source).resolve().parent)}
        atomic_write(self.sweep_file, json.dumps({**origin, **description.__dict__}).encode())

    def _sweep_json(self) -> dict:
        try:
            return json.loads(self.sweep_file.read_text())
        except (OSError, ValueError):
            return {}

    def grid_base_dir(self) -> Optional[Path]:
        """The folder relative data paths in grid.yaml were written against."""
        base = self._sweep_json().get("base_dir")
        return Path(base) if base else None

    def added_points(self) -> list[dict]:
        """The points `tiltsweep refine` added to the sweep ({column: value} of every axis), in
        the order they were added."""
        try:
            return [point for round in json.loads(self.refinements_file.read_text())["rounds"] for point in round["points"]]
        except FileNotFoundError:
            return []

    def add_points(self, points: list[dict], how: str) -> None:
        """Record a round of refinement: `how` (the command's options) and its points."""
        try:
            rounds = json.loads(self.refinements_file.read_text())["rounds"]
        except FileNotFoundError:
            rounds = []
        rounds.append({"how": how, "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "points": points})
        atomic_write(self.refinements_file, json.dumps({"rounds": rounds}, indent=1).encode())

    def description(self) -> Optional[SweepDescription]:
        """None for a directory written before sweep.json described its sweep."""
        saved = self._sweep_json()
        if "points" not in saved:
            return None
        return SweepDescription(saved["name"], saved["axes"], saved["subgrids"], saved["points"],
                                 saved.get("shared", {}), saved.get("former", {}))

    # --- trial records, one file per pack ----------------------------------------------------------

    def pack_path(self, pack_id: str) -> Path:
        return self.records_dir / f"{pack_id}.msgpack"

    def pack_ids(self) -> list[str]:
        if not self.records_dir.is_dir():
            return []
        return sorted(p.stem for p in self.records_dir.glob("*.msgpack") if not p.name.startswith("."))

    def read_pack(self, pack_id: str, only: Optional[Iterable[str]] = None, records: bool = True) -> PackRecords:
        """The pack's records (none yet if it has no file), or `only` those of these points, or with
        records=False only its header's outcomes; CorruptFile if the file is not whole."""
        path = self.pack_path(pack_id)
        wanted = None if only is None else set(only)
        try:
            data = path.read_bytes()
            stream = io.BytesIO(data)  # shares `data`, as a memoryview does: a long sweep's pack file takes MBs
            header_reader = msgpack.Unpacker(stream, raw=False, strict_map_key=False)
            header = header_reader.unpack()
            body = memoryview(data)[header_reader.tell():]
            if len(body) != header["body"]["size"] or hashlib.sha256(body).hexdigest() != header["body"]["sha256"]:
                raise ValueError("records do not match their checksum")
            pack = PackRecords(pack_id, dict(header["attempts"]), dict(header["workers"]))
            if not records:
                pack.outcomes = {t: Outcome(pack_id, *entry) for t, entry in header["index"].items()}
                return pack
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
            raise CorruptFile(path, f"not a pack of trial records ({type(error).__name__}: {error})"[:300]) from None

    def write_pack(self, pack: PackRecords) -> None:
        atomic_write(self.pack_path(pack.pack_id), pack.to_bytes())

    def records(self, on_corrupt: Callable[[CorruptFile], None]) -> dict[str, tuple[str, TrialRecord]]:
        """trial id -> (pack id, record) of every recorded point; an unreadable pack file goes to
        on_corrupt and counts as no records."""
        candidates = ((t, (pack.pack_id, r)) for pack in self._packs(on_corrupt, records=True) for t, r in pack.records.items())
        return counting(candidates, rank=lambda held: held[1].precedence())

    def record_of(self, trial_id: str) -> Optional[tuple[str, TrialRecord]]:
        """(pack id, record) of one point's record that counts, reading one pack's records; None
        if it has none."""
        outcome = self.outcomes(on_corrupt=lambda error: None).get(trial_id)
        if outcome is None:
            return None
        try:
            return outcome.pack_id, self.read_pack(outcome.pack_id, only=[trial_id]).records[trial_id]
        except CorruptFile:
            return None  # the next run's sync quarantines it

    def outcomes(self, on_corrupt: Callable[[CorruptFile], None]) -> dict[str, Outcome]:
        """trial id -> the outcome of its record that counts, from the packs' headers (fast)."""
        candidates = (item for pack in self._packs(on_corrupt, records=False) for item in pack.outcomes.items())
        return counting(candidates, rank=Outcome.precedence)

    def _packs(self, on_corrupt: Callable[[CorruptFile], None], records: bool):
        for pack_id in self.pack_ids():
            try:
                yield self.read_pack(pack_id, records=records)
            except CorruptFile as error:
                on_corrupt(error)

    # --- checkpoints ------------------------------------------------------------------------------

    def checkpoint_files(self, trial_id: str) -> list[Path]:
        """Newest first."""
        directory = self.checkpoints_dir / trial_id
        if not directory.is_dir():
            return []
        return sorted((p for p in directory.glob("epoch-*.ckpt")), reverse=True)

    def save_checkpoint(self, trial_id: str, epoch: int, payload: bytes) -> None:
        path = self.checkpoints_dir / trial_id / f"{checkpoint_name(epoch)}.ckpt"
        atomic_write(path, checksummed(payload))
        for old in self.checkpoint_files(trial_id)[CHECKPOINTS_KEPT:]:
            old.unlink(missing_ok=True)

    # --- kept states, one file per pack ---------------------------------------------------------
    # states/<pack>.states holds the train states its points keep (training.keep_final_state,
    # keep_checkpoints), appended as they are made: entries of a 4-byte header length, a JSON
    # header {trial_id, name, size, sha256}, and the payload. Appending is not atomic, so a
    # worker killed mid-entry leaves a torn last entry, which fails its size or checksum and is
    # skipped; of one (point, name) the last whole entry counts.

    def states_path(self, pack_id: str) -> Path:
        return self.states_dir / f"{pack_id}.states"

    def save_state(self, pack_id: str, trial_id: str, name: str, payload: bytes) -> None:
        """name: "final" or checkpoint_name(epoch)."""
        header = json.dumps({"trial_id": trial_id, "name": name, "size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}).encode()
        path = self.states_path(pack_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as handle:
            handle.write(struct.pack(">I", len(header)) + header + payload)
            handle.flush()
            os.fsync(handle.fileno())

    def kept_states(self, pack_id: str) -> dict[tuple[str, str], tuple[int, int]]:
        """(trial id, name) -> (offset, size) of each whole entry in the pack's states file."""
        return self._scan_states(pack_id)[0]

    def repair_states(self, pack_id: str) -> None:
        """Cut a torn last entry off, so that entries appended next are read (a retried pack's
        worker does this before it trains)."""
        entries, end = self._scan_states(pack_id)
        path = self.states_path(pack_id)
        if path.exists() and path.stat().st_size > end:
            os.truncate(path, end)

    def _scan_states(self, pack_id: str) -> tuple[dict, int]:
        entries: dict[tuple[str, str], tuple[int, int]] = {}
        end = 0
        try:
            handle = open(self.states_path(pack_id), "rb")
        except FileNotFoundError:
            return entries, end
        with handle:
            while len(length := handle.read(4)) == 4:
                try:
                    header = json.loads(handle.read(struct.unpack(">I", length)[0]))
                    offset = handle.tell()
                    payload = handle.read(header["size"])
                except (ValueError, KeyError, TypeError):
                    break
                if len(payload) != header["size"] or hashlib.sha256(payload).hexdigest() != header["sha256"]:
                    break  # torn by a killed writer
                entries[(header["trial_id"], header["name"])] = (offset, header["size"])
                end = handle.tell()
        return entries, end

    def read_state(self, pack_id: str, trial_id: str, name: str) -> Optional[bytes]:
        entry = self.kept_states(pack_id).get((trial_id, name))
        if entry is None:
            return None
        with open(self.states_path(pack_id), "rb") as handle:
            handle.seek(entry[0])
            return handle.read(entry[1])

    def read_checkpoint(self, path: Path) -> bytes:
        data = Path(path).read_bytes()
        digest, payload = data[:32], data[32:]
        if len(data) < 32 or hashlib.sha256(payload).digest() != digest:
            raise CorruptFile(path, "checkpoint does not match its checksum (truncated or overwritten)")
        return payload

    def latest_checkpoint(self, trial_id: str, decode: Callable[[bytes], object] = lambda b: b):
        """(epoch, decode(payload)) of the newest checkpoint that verifies and decodes; unreadable
        ones are quarantined on the way. None when there is none."""
        for path in self.checkpoint_files(trial_id):
            try:
                return int(path.stem.split("-")[1]), decode(self.read_checkpoint(path))
            except FileNotFoundError:
                continue  # removed by a concurrent save's cleanup
            except (CorruptFile, ValueError) as error:
                self.quarantine(path, str(error))
        return None

    def clear_checkpoints(self, trial_id: str) -> None:
        shutil.rmtree(self.checkpoints_dir / trial_id, ignore_errors=True)

    def checkpointed_ids(self) -> list[str]:
        if not self.checkpoints_dir.is_dir():
            return []
        return sorted(p.name for p in self.checkpoints_dir.iterdir() if p.is_dir() and self.checkpoint_files(p.name))

    # --- quarantine -------------------------------------------------------------------------------

    def quarantine(self, path: Path, reason: str) -> Path:
        """Move an unreadable file aside, keeping its relative path, and log why."""
        path = Path(path)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.quarantine_dir / stamp / path.relative_to(self.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.replace(target)
        except FileNotFoundError:
            return target
        with open(self.quarantine_dir / "log.jsonl", "a") as log:
            log.write(json.dumps({"time": stamp, "file": str(path.relative_to(self.root)), "moved_to": str(target.relative_to(self.root)), "reason": reason}) + "\n")
        return target

    def quarantined(self) -> list[dict]:
        try:
            return [json.loads(line) for line in (self.quarantine_dir / "log.jsonl").read_text().splitlines() if line.strip()]
        except (OSError, ValueError):
            return []

    # --- Parquet tables ---------------------------------------------------------------------------
    # summary.parquet/ and curves.parquet/ are directories of one file per pack, each holding the
    # rows of the points whose record that pack holds (sweep.ledger): filing a point rewrites its
    # pack's two files and no other, so no write grows with the sweep. `pandas.read_parquet` reads
    # either directory whole. Files whose names start with `.` (being written) are skipped.

    def summary_path(self, pack_id: str) -> Path:
        return self.summary_dir / f"{pack_id}.parquet"

    def curve_path(self, pack_id: str) -> Path:
        return self.curves_dir / f"{pack_id}.parquet"

    def summary_files(self) -> list[Path]:
        return table_files(self.summary_dir)

    def curve_files(self) -> list[Path]:
        return table_files(self.curves_dir)

    def read_curves(self, trial_ids: Optional[Iterable[str]] = None, on_corrupt: Optional[Callable[[CorruptTable], None]] = None) -> pd.DataFrame:
        """The curves of the given points (all by default), file by file, so points whose metric
        columns differ still line up; an unreadable file goes to on_corrupt (or raises)."""
        curves = read_files(self.curve_files(), ["trial_id", "step", "epoch"], on_corrupt)
        return curves if trial_ids is None else curves[curves["trial_id"].isin(set(trial_ids))].reset_index(drop=True)

    def trace_path(self, trial_id: str) -> Path:
        return self.traces_dir / f"{trial_id}.parquet"

    def read_trace(self, trial_id: str) -> Optional[pd.DataFrame]:
        """The point's trace (`tiltsweep trace`), or None if it has none."""
        path = self.trace_path(trial_id)
        return read_table(path) if path.exists() else None

    def read_summary(self, columns: Iterable[str] = (), on_corrupt: Optional[Callable[[CorruptTable], None]] = None) -> pd.DataFrame:
        """Every pack's summary rows (empty, with the given columns, before the first point is
        filed); summary.parquet written whole by an older tiltsweep is read as it is."""
        if self.summary_dir.is_file():
            return read_table(self.summary_dir)
        return read_files(self.summary_files(), list(columns), on_corrupt)


def table_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.parquet") if not p.name.startswith("."))


def curve_rows(records: Iterable[TrialRecord]) -> list[dict]:
    return [{"trial_id": record.trial_id, **row} for record in records for row in record.history]


def replace_rows(path: Path, rows: list[dict], leaving: Iterable[str] = (), replace_all: bool = False,
                 schema: Optional["pa.Schema"] = None) -> None:
    """Rewrite one pack's table file: without its rows of the points `leaving` (or any of its
    rows, with `replace_all`), with `rows` (dicts with a `trial_id`) after them, typed by `schema`
    where given (else by their values); the file goes when no row is left. CorruptTable if the
    file there cannot be read."""
    import pyarrow as pa
    import pyarrow.compute as pc

    tables = []
    if path.exists() and not replace_all:
        kept = read_table(path, arrow=True)
        tables.append(kept.filter(pc.invert(pc.is_in(kept["trial_id"], value_set=pa.array(list(leaving), pa.string())))))
    if rows:
        names = list(dict.fromkeys(name for row in rows for name in row))  # every row's columns, in order
        tables.append(pa.Table.from_pylist(rows, schema=schema) if schema else pa.table({name: [row.get(name) for row in rows] for name in names}))
    tables = [table for table in tables if table.num_rows]
    if not tables:
        path.unlink(missing_ok=True)
        return
    write_table(pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0], path)


def read_files(paths: list[Path], columns: list[str], on_corrupt: Optional[Callable[["CorruptTable"], None]] = None) -> pd.DataFrame:
    """The tables of the files, one after another (each read alone, so that files whose columns
    differ still line up); an unreadable file goes to on_corrupt (or raises)."""
    import pandas as pd

    frames = []
    for path in paths:
        try:
            frames.append(read_table(path))
        except CorruptTable as error:
            if on_corrupt is None:
                raise
            on_corrupt(error)
    frames = [frame for frame in frames if len(frame)]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


class CorruptTable(ValueError):
    """A Parquet file that cannot be read (truncated, garbage)."""

    def __init__(self, path: Path, reason: str):
        self.path = Path(path)
        super().__init__(f"{path}: unreadable Parquet ({reason})")


def write_table(frame, path: Path) -> None:
    """Write `frame` (an Arrow table, a DataFrame, or columns: {name: [values]}) to `path`
    atomically: readers see the old file or the new one, never half."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(frame, dict):
        frame = pa.table(frame)
    elif not isinstance(frame, pa.Table):
        frame = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    pq.write_table(frame, sink)
    atomic_write(Path(path), sink.getvalue().to_pybytes())


def read_table(path: Path, columns: Optional[list[str]] = None, arrow: bool = False):
    """One Parquet file (or some of its columns) as a DataFrame (an Arrow table with `arrow`);
    CorruptTable if it cannot be read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as error:
        raise CorruptTable(path, str(error).splitlines()[0]) from None
    return table if arrow else table.to_pandas()


def check_readable(path: Path):
    """The file's Parquet footer (its schema, its number of rows); CorruptTable if it cannot be
    read (cheap)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(path)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as error:
        raise CorruptTable(path, str(error).splitlines()[0]) from None
