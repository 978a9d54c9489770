"""The run: a validated sweep (sweep.grid) trained on Ray Tune workers, its points filed into the
store as they finish.

runner (run and resume: the order of work), packs (the points one Tune trial trains), executor (the
one module that imports Ray), worker (a pack trained in a worker process), retries (how a crashed
point is retried and when it is recorded failed), filer (finished points filed on a thread of the
driver), progress (the progress line), signals (SIGINT and SIGTERM stop a run cleanly), faults
(faults injected for tests of recovery), provenance (the code version kept with every result).
"""
