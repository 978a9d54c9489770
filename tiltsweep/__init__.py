"""tiltsweep: sweeps of dynamical (oscillating) loss functions over amplitude and period.

The one import name that installing tiltsweep adds. Its parts live in the repository's
top-level folders and are installed beneath it (pyproject.toml's package-dir):
- `tiltsweep.trainers`: JAX/Flax/Optax training of one point; no Ray, no Parquet;
- `tiltsweep.sweep`: grid files, trial ids, the results directory, the Ray Tune executor, the CLI;
- `tiltsweep.analysis`: load, reduce and draw results (`from tiltsweep.analysis import plots`);
  it loads no JAX.
Importing this package imports none of them.
"""
