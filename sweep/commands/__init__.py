"""The commands: the `tiltsweep` command line (cli) and what each command does beyond running a
sweep: refine, trace, lr_range, interpolate, trackers (MLflow, W&B) and live (what follows a
running sweep: the live report, the trackers). On top: nothing imports them.
"""
