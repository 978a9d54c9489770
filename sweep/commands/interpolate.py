"""`tiltsweep interpolate DIR A B`: loss and accuracy between two kept train states.

A and B name a trial (its final state, kept by default) or `TRIAL@EPOCH` (a checkpoint kept with
training.keep_checkpoints: e.g. the ends of two cycles of a cyclical learning rate). Both must
share model and data. Writes the table <A>__<B> and the figure interpolation_<A>__<B>.png where the
store keeps them (DIR/interpolations/, DIR/figures/).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tiltsweep.sweep.errors import Refused
from tiltsweep.sweep.store import ResultsDir
from tiltsweep.sweep.store.layout import checkpoint_name


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

    recorded = results.records.of(endpoint.trial_id)
    if recorded is None:
        raise Refused(f"{results}: no finished trial {endpoint.trial_id!r}")
    pack_id, record = recorded
    payload = results.states.read(pack_id, endpoint.trial_id, endpoint.state)
    if payload is None:
        kept = ", ".join(sorted(name for trial, name in results.states.kept(pack_id) if trial == endpoint.trial_id)) or "none"
        raise Refused(f"{endpoint.text}: no kept state {endpoint.state} (kept: {kept}; "
                      "final states need training.keep_final_state, epochs need training.keep_checkpoints)")
    try:
        return record.config, Checkpoint.from_bytes(payload).state
    except ValueError as error:
        raise Refused(f"{results.states.show(pack_id)}: {endpoint.text}: {error}") from None


def interpolate_states(directory, a: str, b: str, alphas=None) -> tuple[pd.DataFrame, str, str]:
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
    table = results.write_interpolation(name, frame)
    from tiltsweep.analysis import figures

    drawn = figures.interpolation(frame, f"{results.name}: from {a} (alpha = 0) to {b} (alpha = 1)")
    figure = results.write_figure(f"interpolation_{name}.png", figures.save(drawn, "png"))
    return frame, table, figure
