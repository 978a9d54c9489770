"""`tiltsweep interpolate DIR A B`: loss and accuracy between two kept train states.

A and B name a trial (its final state, kept by default) or `TRIAL@EPOCH` (a checkpoint kept with
training.keep_checkpoints: e.g. the ends of two cycles of a cyclical learning rate). Both must
share model and data. Writes DIR/interpolations/<A>__<B>.parquet and DIR/figures/interpolation_<A>__<B>.png.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tiltsweep.sweep.atomic import atomic_write
from tiltsweep.sweep.errors import Refused
from tiltsweep.sweep.results import ResultsDir, checkpoint_name, write_table


@dataclass
class Endpoint:
    text: str
    trial_id: str
    state: str  # "final" or "epoch-<n>"


def parse_endpoint(text: str) -> Endpoint:
    trial_id, _, epoch = text.partition("@")
    if epoch and not epoch.isdigit():
        raise Refused(f"{text}: expected TRIAL or TRIAL@EPOCH")
    return Endpoint(text, trial_id, checkpoint_name(int(epoch)) if epoch else "final")


def load_endpoint(results: ResultsDir, endpoint: Endpoint) -> tuple[dict, dict]:
    """(the trial's config, the state dict) of an endpoint, or Refused saying what is missing."""
    from tiltsweep.trainers import Checkpoint

    recorded = results.record_of(endpoint.trial_id)
    if recorded is None:
        raise Refused(f"{results.root}: no finished trial {endpoint.trial_id!r}")
    pack_id, record = recorded
    payload = results.read_state(pack_id, endpoint.trial_id, endpoint.state)
    if payload is None:
        kept = ", ".join(sorted(name for trial, name in results.kept_states(pack_id) if trial == endpoint.trial_id)) or "none"
        raise Refused(f"{endpoint.text}: no kept state {endpoint.state} (kept: {kept}; "
                      "final states need training.keep_final_state, epochs need training.keep_checkpoints)")
    try:
        return record.config, Checkpoint.from_bytes(payload).state
    except ValueError as error:
        raise Refused(f"{results.states_path(pack_id)}: {endpoint.text}: {error}") from None


def interpolate_states(directory, a: str, b: str, alphas=None) -> tuple[pd.DataFrame, Path, Path]:
    from tiltsweep.trainers import TrialConfig
    from tiltsweep.trainers.interpolate import interpolate

    results = ResultsDir(directory)
    first, second = parse_endpoint(a), parse_endpoint(b)
    config_a, state_a = load_endpoint(results, first)
    config_b, state_b = load_endpoint(results, second)
    for section in ("model", "data"):
        if config_a[section] != config_b[section]:
            raise Refused(f"{a} and {b} differ in {section}: only models of one architecture and dataset interpolate")
    alphas = np.round(np.linspace(-0.5, 1.5, 41), 10) if alphas is None else alphas
    frame = pd.DataFrame(interpolate(TrialConfig.model_validate(config_a), state_a, state_b, alphas))
    name = f"{a}__{b}".replace("@", "-at-")
    table = results.root / "interpolations" / f"{name}.parquet"
    write_table(frame, table)
    from tiltsweep.analysis import figures

    figure = results.figures_dir / f"interpolation_{name}.png"
    atomic_write(figure, figures.save(figures.interpolation(frame, f"{results.root.name}: from {a} (alpha = 0) to {b} (alpha = 1)"), "png"))
    return frame, table, figure
