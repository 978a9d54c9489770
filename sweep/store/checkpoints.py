"""Train states in a results directory: the checkpoints of unfinished points, and the states that
finished points keep.

- checkpoints/<trial>/epoch-<n>.ckpt: sha256(payload) then the payload (trainers.Checkpoint's
  bytes), so that a truncated or overwritten checkpoint is found before it is used; the newest
  KEPT of a point are kept, and all go once its record is final.
- states/<pack>.states: the states a pack's points keep (training.keep_final_state,
  keep_checkpoints), appended as they are made, a block's final states in one append (on object
  storage, each append a whole object of its own: store.files): entries of a 4-byte header
  length, a JSON header {trial_id, name, size, sha256}, and the payload. Appending is not atomic,
  so a worker killed mid-entry leaves a torn last entry, which fails its size or checksum and is
  skipped; of one (point, name) the last whole entry counts. name: "final" (a point's state at its end,
  epoch None here) or layout.checkpoint_name(epoch) (its state at that epoch).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import struct
from typing import Callable, Iterable, Optional

from tiltsweep.sweep.store import layout
from tiltsweep.sweep.store.files import Files, for_each
from tiltsweep.sweep.store.records import CorruptFile

KEPT = 2


class Checkpoints:
    """The checkpoints/ folder. `quarantine(name, reason)` moves an unreadable one aside."""

    def __init__(self, files: Files, quarantine: Callable[[str, str], object]):
        self.files, self.quarantine = files, quarantine

    def names(self, trial_id: str) -> list[str]:
        """The point's checkpoints, newest first."""
        folder = layout.checkpoint_folder(trial_id)
        return [f"{folder}/{name}" for name in reversed(self.files.names(folder, ".ckpt")) if name.startswith("epoch-")]

    def newest(self, trial_id: str) -> Optional[str]:
        """The name of the point's newest checkpoint, if it has one."""
        return next(iter(self.names(trial_id)), None)

    def newest_epoch(self, trial_id: str) -> Optional[int]:
        """The epoch of the point's newest checkpoint, if it has one (not verified: `latest` does)."""
        newest = self.newest(trial_id)
        return None if newest is None else epoch_of(newest)

    def save(self, trial_id: str, epoch: int, payload: bytes) -> None:
        self.files.write(layout.checkpoint(trial_id, epoch), hashlib.sha256(payload).digest() + payload)
        for old in self.names(trial_id)[KEPT:]:
            self.files.delete(old)

    def read(self, name: str) -> bytes:
        """A checkpoint's payload; CorruptFile if it does not match its checksum."""
        data = self.files.read(name)
        digest, payload = data[:32], data[32:]
        if len(data) < 32 or hashlib.sha256(payload).digest() != digest:
            raise CorruptFile(name, self.files.show(name), "checkpoint does not match its checksum (truncated or overwritten)")
        return payload

    def latest(self, trial_id: str, decode: Callable[[bytes], object] = lambda b: b):
        """(epoch, decode(payload)) of the newest checkpoint that verifies and decodes; unreadable
        ones are quarantined on the way. None when there is none."""
        for name in self.names(trial_id):
            try:
                return epoch_of(name), decode(self.read(name))
            except FileNotFoundError:
                continue  # removed by a concurrent save's cleanup
            except (CorruptFile, ValueError) as error:
                self.quarantine(name, str(error))
        return None

    def clear(self, trial_id: str) -> None:
        self.files.delete_folder(layout.checkpoint_folder(trial_id))

    def clear_each(self, trial_ids: list[str]) -> None:
        """clear() of each point, several at once on object storage (a listing and deletions each)."""
        for _ in for_each(self.files, self.clear, trial_ids):
            pass

    def trials(self) -> list[str]:
        """The points that have a checkpoint (one listing of the folder)."""
        return sorted({name.split("/")[1] for name in self.files.tree(layout.CHECKPOINTS, ".ckpt") if name.rsplit("/", 1)[-1].startswith("epoch-")})


def epoch_of(name: str) -> int:
    return int(name.rsplit("/", 1)[-1].removesuffix(".ckpt").split("-")[1])


class KeptStates:
    """The states/ folder."""

    def __init__(self, files: Files):
        self.files = files

    def save(self, pack_id: str, states: Iterable[tuple[str, bytes]], epoch: Optional[int] = None) -> None:
        """Keep points' states, (trial id, payload) pairs: their final ones, or with `epoch` those
        at that epoch. One append for them all (on object storage one object, not one a point),
        written as the pairs come: a block's states need not be in memory together."""
        entries = (entry for trial_id, payload in states for entry in state_entry(trial_id, payload, epoch))
        first = next(entries, None)
        if first is not None:
            self.files.append(layout.pack_states(pack_id), itertools.chain([first], entries))

    def kept(self, pack_id: str) -> dict[tuple[str, Optional[int]], tuple[str, int, int]]:
        """(trial id, epoch or None for the final state) -> (part, offset, size) of each whole entry
        of the pack's states file (store.files: the parts of an appended file, in order)."""
        entries = {}
        for part in self.files.parts(layout.pack_states(pack_id)):
            entries.update({(trial_id, state_epoch(name)): (part, *where) for (trial_id, name), where in self._scan(part)[0].items()})
        return entries

    def repair(self, pack_id: str) -> None:
        """Cut a torn last entry off, so that entries appended next are read (a retried pack's
        worker does this before it trains). Only a file on a disk is appended to in place."""
        name = layout.pack_states(pack_id)
        if self.files.on_disk and self.files.exists(name):
            _, end = self._scan(name)
            if self.files.size(name) > end:
                self.files.truncate(name, end)

    def read(self, pack_id: str, trial_id: str, epoch: Optional[int] = None) -> Optional[bytes]:
        """A kept state's payload (the final one, or that at `epoch`); None if it was not kept."""
        entry = self.kept(pack_id).get((trial_id, epoch))
        if entry is None:
            return None
        part, offset, size = entry
        with self.files.open(part) as handle:
            handle.seek(offset)
            return handle.read(size)

    def show(self, pack_id: str) -> str:
        return self.files.show(layout.pack_states(pack_id))

    def _scan(self, part: str) -> tuple[dict, int]:
        """(trial id, name) -> (offset, size) of the whole entries of one part, and where they end."""
        entries: dict[tuple[str, str], tuple[int, int]] = {}
        end = 0
        try:
            handle = self.files.open(part)
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


def state_entry(trial_id: str, payload: bytes, epoch: Optional[int]) -> tuple[bytes, bytes, bytes]:
    """A states file's entry of a point's state: its header's length, its header, its payload."""
    header = json.dumps({"trial_id": trial_id, "name": state_name(epoch), "size": len(payload),
                         "sha256": hashlib.sha256(payload).hexdigest()}).encode()
    return struct.pack(">I", len(header)), header, payload


def state_name(epoch: Optional[int]) -> str:
    return "final" if epoch is None else layout.checkpoint_name(epoch)


def state_epoch(name: str) -> Optional[int]:
    return None if name == "final" else int(name.split("-")[1])
