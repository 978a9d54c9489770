"""The results directory of one sweep, the source of truth:

    <root>/grid.yaml                 the grid as submitted
    <root>/sweep.json                where it came from (for `tiltsweep resume`)
    <root>/trials/<id>.msgpack       the record of a finished trial: status, final metrics, curve,
                                     config, provenance; written once by whoever finishes it
    <root>/summary.parquet           one row per record, rebuilt from the records (sweep.ledger)
    <root>/curves.parquet/<id>.parquet   one curve per record
    <root>/checkpoints/<id>/epoch-<n>.ckpt   the latest train states of an unfinished trial
    <root>/states/<id>/final.ckpt    a finished trial's final state (and epoch-<n>.ckpt with
                                     training.keep_checkpoints), for `tiltsweep interpolate`
    <root>/quarantine/               unreadable files, moved aside (never deleted), with log.jsonl
    <root>/figures/                  what `tiltsweep plot` draws

Every file is written atomically. A checkpoint file is sha256(payload) followed by the payload,
so a truncated or overwritten checkpoint is detected before it is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Callable, Optional

import msgpack

from tiltsweep.sweep.atomic import atomic_write

CHECKPOINTS_KEPT = 2
RECORD_KEYS = {"trial_id", "status", "config", "history"}


def checkpoint_name(epoch: int) -> str:
    """epoch-<n>, zero-padded so that names sort by epoch."""
    return f"epoch-{epoch:012d}"


def checksummed(payload: bytes) -> bytes:
    return hashlib.sha256(payload).digest() + payload


class CorruptFile(ValueError):
    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: {reason}")


class ResultsDir:
    def __init__(self, root):
        self.root = Path(root).expanduser().resolve()

    grid_file = property(lambda self: self.root / "grid.yaml")
    sweep_file = property(lambda self: self.root / "sweep.json")
    summary_path = property(lambda self: self.root / "summary.parquet")
    curves_dir = property(lambda self: self.root / "curves.parquet")
    trials_dir = property(lambda self: self.root / "trials")
    checkpoints_dir = property(lambda self: self.root / "checkpoints")
    quarantine_dir = property(lambda self: self.root / "quarantine")
    figures_dir = property(lambda self: self.root / "figures")
    lock_path = property(lambda self: self.root / ".lock")
    states_dir = property(lambda self: self.root / "states")

    def exists(self) -> bool:
        return self.grid_file.is_file()

    # --- the grid -------------------------------------------------------------------------------

    def save_grid(self, text: str, source: Path) -> None:
        atomic_write(self.grid_file, text.encode())
        origin = {"source": str(Path(source).resolve()), "base_dir": str(Path(source).resolve().parent)}
        atomic_write(self.sweep_file, json.dumps(origin, indent=2).encode())

    def grid_base_dir(self) -> Optional[Path]:
        """The folder relative data paths in grid.yaml were written against."""
        try:
            return Path(json.loads(self.sweep_file.read_text())["base_dir"])
        except (OSError, ValueError, KeyError):
            return None

    # --- trial records --------------------------------------------------------------------------

    def record_path(self, trial_id: str) -> Path:
        return self.trials_dir / f"{trial_id}.msgpack"

    def write_record(self, record: dict) -> None:
        atomic_write(self.record_path(record["trial_id"]), msgpack.packb(record, use_bin_type=True))

    def read_record(self, trial_id: str) -> dict:
        path = self.record_path(trial_id)
        try:
            record = msgpack.unpackb(path.read_bytes(), raw=False, strict_map_key=False)
        except FileNotFoundError:
            raise
        except Exception as error:
            raise CorruptFile(path, f"not a trial record ({type(error).__name__})") from None
        if not isinstance(record, dict) or not RECORD_KEYS <= record.keys() or record["trial_id"] != trial_id:
            raise CorruptFile(path, "not a trial record (fields missing)")
        return record

    def record_ids(self) -> list[str]:
        if not self.trials_dir.is_dir():
            return []
        return sorted(p.stem for p in self.trials_dir.glob("*.msgpack") if not p.name.startswith("."))

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

    def state_path(self, trial_id: str, name: str) -> Path:
        """A kept state: name is "final" or checkpoint_name(epoch)."""
        return self.states_dir / trial_id / f"{name}.ckpt"

    def save_state(self, trial_id: str, name: str, payload: bytes) -> None:
        atomic_write(self.state_path(trial_id, name), checksummed(payload))

    def state_names(self, trial_id: str) -> list[str]:
        directory = self.states_dir / trial_id
        return sorted(p.stem for p in directory.glob("*.ckpt")) if directory.is_dir() else []

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

    def begin_attempt(self, trial_id: str) -> int:
        """Count one more start of this trial's training, and say which process runs it
        (checkpoints/<id>/attempt.json: attempts, host, pid)."""
        path = self.checkpoints_dir / trial_id / "attempt.json"
        attempts = self.attempt(trial_id).get("attempts", 0) + 1
        atomic_write(path, json.dumps({"attempts": attempts, "host": socket.gethostname(), "pid": os.getpid()}).encode())
        return attempts

    def attempt(self, trial_id: str) -> dict:
        try:
            return json.loads((self.checkpoints_dir / trial_id / "attempt.json").read_text())
        except (OSError, ValueError):
            return {}

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
