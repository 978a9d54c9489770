"""One sweep's results directory, the source of truth: the store's one entry point. It knows every
path inside the directory (store.layout) and hands out its parts:

    results = ResultsDir("results/quickstart")
    results.records       trial records, one file per pack (store.records)
    results.checkpoints   checkpoints of unfinished points (store.checkpoints)
    results.states        the states finished points keep
    results.tables        summary, curves, traces and measurements in Parquet (store.tables)
    results.lock()        the run lock (store.lock)

and keeps, itself, what the sweep is (grid.yaml, sweep.json, refinements.json), the destinations
of what commands draw and measure, and the quarantine of unreadable files. Every file is written
whole (store.files).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tiltsweep.sweep.errors import Refused
from tiltsweep.sweep.store import layout
from tiltsweep.sweep.store.checkpoints import Checkpoints, KeptStates
from tiltsweep.sweep.store.files import files_at
from tiltsweep.sweep.store.records import PackFiles
from tiltsweep.sweep.store.tables import Tables


@dataclass(frozen=True)
class SweepDescription:
    """What sweep.json says a sweep is, so that nobody after the run parses its grid file."""

    name: str
    axes: dict[str, list]  # column -> values, in the grid file's order (over all sub-grids)
    subgrids: list[dict]  # {"axes": {column: values}, "trial_ids": [...]} per sub-grid
    points: dict[str, dict[str, Any]]  # trial id -> {column: value}, in grid order
    # trial id -> the other combinations of the grid's values its training stands for (amplitude 1
    # at other periods: sweep.grid.identity); analysis draws its row in each of their cells too
    shared: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


PER_POINT_RECORDS = "trials"  # development versions before 0.1 kept a folder of records per point (layout 0)


class OtherLayout(Refused):
    """A results directory written with another layout version than this tiltsweep's."""


class NotResults(Refused):
    """A path that is not a results directory."""


class ResultsDir:
    def __init__(self, location):
        """location: a local path, or an object-storage URI (store.files.files_at)."""
        self.files = files_at(location)
        self.location = self.files.show()  # the absolute path or the URI, as messages show it and workers open it
        self.root: Optional[Path] = getattr(self.files, "root", None)  # the local path; None on object storage
        self.records = PackFiles(self.files)
        self.checkpoints = Checkpoints(self.files, self.quarantine)
        self.states = KeptStates(self.files)
        self.tables = Tables(self.files)
        self._layout: Optional[int] = None  # of a directory whose sweep.json names none, once looked at
        self._saved: Optional[dict] = None  # sweep.json, once read (each read is a request on object storage)

    @property
    def name(self) -> str:
        return self.location.rstrip("/").rsplit("/", 1)[-1]

    def __str__(self) -> str:
        return self.files.show()

    def exists(self) -> bool:
        """Whether it is a results directory: a run saved its grid there."""
        return self.files.exists(layout.GRID)

    def opened(self) -> "ResultsDir":
        """This directory, if it is a results directory of this layout (or one whose run stopped
        before describing it, which `resume` describes); NotResults or OtherLayout (refusals)
        saying what it is instead."""
        if not self.files.is_folder(""):
            raise NotResults(f"{self}: no such results directory")
        if not self.exists():
            raise NotResults(f"{self}: not a tiltsweep results directory (no {layout.GRID})")
        if self.described():
            self.description()
        return self

    # --- what the sweep is ------------------------------------------------------------------------

    def save_grid(self, text: str, source, description: SweepDescription, base_dir: Optional[Path] = None) -> None:
        """grid.yaml as submitted, and sweep.json: the layout's version, where the grid file came
        from, the folder its relative data paths resolve against (default: the grid file's) and
        the description."""
        self.files.write(layout.GRID, text.encode())
        base_dir = base_dir or Path(source).resolve().parent
        origin = {"source": str(source if "://" in str(source) else Path(source).resolve()), "base_dir": str(base_dir)}
        text = json.dumps({"layout": layout.LAYOUT, **origin, **description.__dict__})
        self.files.write(layout.SWEEP, text.encode())
        self._saved = json.loads(text)  # as a read would give it

    def grid_text(self) -> str:
        """grid.yaml as submitted, to parse the sweep again (`resume`)."""
        return self.files.read(layout.GRID).decode()

    def grid_shown(self) -> str:
        """How messages name grid.yaml."""
        return self.files.show(layout.GRID)

    def _sweep_json(self) -> dict:
        """sweep.json (read once); NotResults where a run stopped before writing it, or it cannot be read."""
        if self._saved is not None:
            return self._saved
        try:
            self._saved = json.loads(self.files.read(layout.SWEEP))
            return self._saved
        except FileNotFoundError:
            raise NotResults(f"{self}: its run stopped before it described the sweep (no {layout.SWEEP}): "
                             f"`tiltsweep resume {self}` describes it and runs it") from None
        except (OSError, ValueError) as error:
            raise NotResults(f"{self}: {layout.SWEEP} cannot be read ({error}); `tiltsweep resume {self}` writes it again") from None

    def grid_base_dir(self) -> Optional[Path]:
        """The folder relative data paths in grid.yaml were written against (None: not known)."""
        try:
            base = self._sweep_json().get("base_dir")
        except NotResults:
            return None
        return Path(base) if base else None

    def described(self) -> bool:
        """Whether sweep.json is there (a run writes it before its first point)."""
        return self.files.exists(layout.SWEEP)

    def description(self) -> SweepDescription:
        """What sweep.json says; NotResults where it is missing or unreadable, OtherLayout where
        another layout version wrote the directory."""
        saved = self._sweep_json()
        version = saved["layout"] if "layout" in saved else self._unversioned_layout()
        if version != layout.LAYOUT:
            raise OtherLayout(f"{self}: written with results layout {version}, and this tiltsweep reads layout {layout.LAYOUT} only: "
                              f"open it with the tiltsweep that wrote it, or run its grid again into a new --out")
        return SweepDescription(saved["name"], saved["axes"], saved["subgrids"], saved["points"], saved.get("shared", {}))

    def _unversioned_layout(self) -> int:
        """The layout of a directory whose sweep.json names none: 1 where it has the shape
        tiltsweep 0.1 gave it (summary.parquet a folder, record headers that count each record's
        evaluations, no folder of per-point records), 0 (a development version's) otherwise."""
        if self._layout is None:
            # a summary.parquet file (written whole) or per-point records: before 0.1
            shaped = not self.files.exists(layout.SUMMARY) and not self.files.is_folder(PER_POINT_RECORDS)
            self._layout = 1 if shaped and all(self.records.counts_evaluations(p) for p in self.records.ids()[:1]) else 0
        return self._layout

    def added_points(self) -> list[dict]:
        """The points `tiltsweep refine` added to the sweep ({column: value} of every axis), in
        the order they were added."""
        return [point for round in self._refinements() for point in round["points"]]

    def add_points(self, points: list[dict], how: str) -> None:
        """Record a round of refinement: `how` (the command's options) and its points."""
        rounds = self._refinements() + [{"how": how, "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "points": points}]
        self.files.write(layout.REFINEMENTS, json.dumps({"rounds": rounds}, indent=1).encode())

    def _refinements(self) -> list[dict]:
        try:
            return json.loads(self.files.read(layout.REFINEMENTS))["rounds"]
        except FileNotFoundError:
            return []

    # --- what the commands make -----------------------------------------------------------------

    def write_figure(self, file_name: str, data: bytes) -> str:
        """figures/<file_name>; returns where it went."""
        self.files.write(layout.figure(file_name), data)
        return self.files.show(layout.figure(file_name))

    def figure_shown(self, file_name: str) -> str:
        return self.files.show(layout.figure(file_name))

    def tracker_folder(self) -> Path:
        """Where a tracker keeps its own files (W&B's offline runs): trackers/ on a disk, a folder of
        this machine's for a directory on object storage."""
        return self.files.local(layout.TRACKERS)

    def tracker_logged(self, tracker: str) -> list:
        """What a tracker that cannot ask its server noted as logged (trackers/<tracker>.json)."""
        try:
            return json.loads(self.files.read(layout.tracker(f"{tracker}.json")))
        except FileNotFoundError:
            return []

    def save_tracker_logged(self, tracker: str, logged: list) -> None:
        self.files.write(layout.tracker(f"{tracker}.json"), json.dumps(logged).encode())

    def faults_folder(self) -> Path:
        """Where the firings of injected faults are counted (run.faults): .faults/ on a disk, a
        folder of each machine's for a directory on object storage."""
        return self.files.local(layout.FAULTS)

    def tune_folder(self) -> Path:
        """Scratch for Ray Tune's own bookkeeping during a run (the records hold what matters):
        .tune/ on a disk, a folder of the driver's machine for a directory on object storage."""
        return self.files.local(layout.TUNE)

    def lock(self):
        """The run lock (store.lock): an OS file lock on a disk, a lease on object storage."""
        from tiltsweep.sweep.store.lock import Lease, RunLock

        if self.root is None:
            return Lease(self.files, layout.LOCK)
        return RunLock(self.files.path(layout.LOCK), self.files.path(layout.LOCK_OWNER))

    # --- quarantine -------------------------------------------------------------------------------

    def quarantine(self, name: str, reason: str) -> str:
        """Move an unreadable file aside, keeping its path in the directory, and log why; returns
        where it went."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = f"{layout.QUARANTINE}/{stamp}/{name}"
        if self.files.move(name, target):
            entry = {"time": stamp, "file": name, "moved_to": target, "reason": reason}
            self.files.append(layout.QUARANTINE_LOG, [(json.dumps(entry) + "\n").encode()])
        return self.files.show(target)

    def quarantined(self) -> list[dict]:
        try:
            log = b"".join(self.files.read(part) for part in self.files.parts(layout.QUARANTINE_LOG)).decode()
            return [json.loads(line) for line in log.splitlines() if line.strip()]
        except (OSError, ValueError):
            return []

    def remove_stale_asides(self) -> None:
        """Delete what writers killed mid-write left aside (while nobody writes)."""
        self.files.remove_stale_asides(keep=layout.QUARANTINE)

