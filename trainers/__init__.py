"""The training core: one grid point in, metrics out. No Ray, no Parquet, no sweeps.

config (a point's settings), data (datasets, offline), models, oscillation (Gamma_i(t)), loss
(F(t)), optim (optimizers and schedules), engine (the compiled step, augmentation included, and
the loop), training (train, train_group: the entry points), checkpoint, hessian (top
eigenvalues), interpolate (loss along a line between two states), compilation/ (XLA's compile
cache shared by a machine's workers).

Its names are imported when first used (PEP 562), so that importing a JAX-free part of it
(`tiltsweep.trainers.config`, `.data`), as reading results does, loads no JAX."""

import importlib

_HOMES = {
    "Checkpoint": "checkpoint",
    "compilation_counts": "compilation.counts",
    "training_loop_compilations": "compilation.counts",
    "TrialConfig": "config",
    "TrainResult": "training",
    "batch_signature": "config",
    "train": "training",
    "train_group": "training",
    "train_evaluated": "training",
    "build_group_programs": "training",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
