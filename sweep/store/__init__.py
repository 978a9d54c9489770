"""The store: a sweep's results directory (a local or shared path), the only code that knows a
path inside one. Below the run and analysis; it imports neither.

    from tiltsweep.sweep.store import ResultsDir
    results = ResultsDir("results/quickstart")   # store.directory: the entry point
    results.records, results.checkpoints, results.states, results.tables, results.lock()

Its modules: layout (every name in a results directory, and the layout's version), files (whole
writes, reads, listings), records (the trial records of packs), checkpoints (and kept states),
tables (Parquet), directory (ResultsDir), location (where a results directory can be), ledger (the
tables filed from the records), status (where points stand), lock (one run at a time).
"""

from tiltsweep.sweep.store.directory import NotResults, OtherLayout, ResultsDir, SweepDescription
from tiltsweep.sweep.store.records import FINAL_STATUSES, CorruptFile, PackRecords, TrialRecord
from tiltsweep.sweep.store.tables import CorruptTable

__all__ = ["CorruptFile", "CorruptTable", "FINAL_STATUSES", "NotResults", "OtherLayout", "PackRecords", "ResultsDir", "SweepDescription", "TrialRecord"]
