"""The layout of a results directory, written once: every file and folder inside one, by its path
relative to the directory's root. Only the store (this folder) uses these names; everyone else
asks the store for a table, a record, a figure's destination.

    grid.yaml                        the grid as submitted
    sweep.json                       what the sweep is (name, axes, sub-grids, points) and LAYOUT
    refinements.json                 the points `tiltsweep refine` added, round by round
    records/<pack>.msgpack           the records of one pack's points (store.records)
    summary.parquet/<pack>.parquet   a row per point recorded in that pack (store.ledger)
    curves.parquet/<pack>.parquet    the curves of those points
    checkpoints/<trial>/epoch-<n>.ckpt   the latest train states of an unfinished point
    states/<pack>.states             the states a pack's finished points keep (store.checkpoints)
    traces/<trial>.parquet           one finished point replayed densely (`tiltsweep trace`)
    interpolations/<a>__<b>.parquet  what `tiltsweep interpolate` measured
    lr-range/range.parquet           what `tiltsweep lr-range` measured
    figures/                         what `tiltsweep plot` draws
    trackers/                        what a tracker keeps (W&B's offline runs, the points it logged)
    quarantine/<when>/<path>, quarantine/log.jsonl   unreadable files, moved aside, and why
    .lock, .lock.owner               the run lock and who holds it (store.lock)
    .faults/                         the firings of injected faults (run.faults), for tests
    .tune/                           Ray Tune's scratch while a run lasts

A results directory may be a folder on a disk or a prefix of a bucket (store.files); there, a file
that grows by appending (states/<pack>.states, quarantine/log.jsonl) is a series of whole objects
`<name>.part-<n>`, and .lock is a lease (store.lock).

LAYOUT is the version of this layout, kept in sweep.json: a directory of another version is
refused (store.directory.OtherLayout), never migrated. Version 1 is what tiltsweep 0.1 wrote
(its sweep.json has no version).
"""

from __future__ import annotations

from typing import Callable

LAYOUT = 1
# Bytes the longest path the store writes below a results directory's root takes, with room to
# spare: an aside of an interpolation's table (interpolations/.<trial>-at-<epoch>__<trial>-at-
# <epoch>.parquet.<uuid>.tmp, about 120) or of a checkpoint (checkpoints/<trial>/.epoch-<n>.ckpt.<uuid>.tmp, 90).
LONGEST_INSIDE = 128

GRID = "grid.yaml"
SWEEP = "sweep.json"
REFINEMENTS = "refinements.json"
RECORDS = "records"
SUMMARY = "summary.parquet"
CURVES = "curves.parquet"
CHECKPOINTS = "checkpoints"
STATES = "states"
TRACES = "traces"
INTERPOLATIONS = "interpolations"
LR_RANGE = "lr-range/range.parquet"
FIGURES = "figures"
TRACKERS = "trackers"
QUARANTINE = "quarantine"
QUARANTINE_LOG = f"{QUARANTINE}/log.jsonl"
LOCK = ".lock"
LOCK_OWNER = ".lock.owner"
FAULTS = ".faults"
TUNE = ".tune"


def named(folder: str, suffix: str = "") -> Callable[[str], str]:
    """The path of a file in `folder` named by a key (a pack id, a trial id, a file name) and `suffix`."""
    return lambda key: f"{folder}/{key}{suffix}"


pack_records = named(RECORDS, ".msgpack")
pack_summary = named(SUMMARY, ".parquet")
pack_curves = named(CURVES, ".parquet")
pack_states = named(STATES, ".states")
checkpoint_folder = named(CHECKPOINTS)
trace = named(TRACES, ".parquet")
interpolation = named(INTERPOLATIONS, ".parquet")
figure = named(FIGURES)
tracker = named(TRACKERS)


def checkpoint_name(epoch: int) -> str:
    """epoch-<n>, zero-padded so that names sort by epoch."""
    return f"epoch-{epoch:012d}"


def checkpoint(trial_id: str, epoch: int) -> str:
    return f"{checkpoint_folder(trial_id)}/{checkpoint_name(epoch)}.ckpt"
