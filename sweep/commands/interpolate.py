"""`tiltsweep interpolate DIR A B`: loss and accuracy between two kept train states.

A and B name a trial (its final state, kept by default) or `TRIAL@EPOCH` (a checkpoint kept with
training.keep_checkpoints: e.g. the ends of two cycles of a cyclical learning rate). Both must
share model and data. Writes the table <A>__<B> and the figure interpolation_<A>__<B>.png where the
store keeps them (DIR/interpolations/, DIR/figures/).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from tiltsweep.sweep.errors import Refused
from tiltsweep.sweep.store import ResultsDir


@dataclass
class Endpoint:
    text: str
    trial_id: str
    epoch: Optional[int]  # of a state kept at that epoch; None: the final state


def parse_endpoint(text: str) -> Endpoint:
    trial_id, _, epoch = text.partition("@")
    if epoch and not epoch.isdigit():
        raise Refused(f"{text}: expected TRIAL or TRIAL@EPOCH")
    return Endpoint(text, trial_id, int(epoch) if epoch else None)


def load_endpoint(results: ResultsDir, endpoint: Endpoint) -> tuple[dict, dict]:
    """(the trial's config, the state dict) of an endpoint, or Refused saying what is missing."""
    from tiltsweep.trainers import Checkpoint

    recorded = results.records.of(endpoint.trial_id)
    if recorded is None:
        raise Refused(f"{results}: no finished trial {endpoint.trial_id!r}")
    pack_id, record = recorded
    payload = results.states.read(pack_id, endpoint.trial_id, endpoint.epoch)
    if payload is None:
        epochs = sorted((epoch for trial, epoch in results.states.kept(pack_id) if trial == endpoint.trial_id), key=lambda e: (e is None, e))
        kept = ", ".join("final" if epoch is None else f"epoch {epoch}" for epoch in epochs) or "none"
        wanted = "final state" if endpoint.epoch is None else f"state at epoch {endpoint.epoch}"
        raise Refused(f"{endpoint.text}: no kept {wanted} (kept: {kept}; "
                      "final states need training.keep_final_state, epochs need training.keep_checkpoints)")
    try:
        return record.config, Checkpoint.from_bytes(payload).state
    except ValueError as error:
        raise Refused(f"{results.states.show(pack_id)}: {endpoint.text}: {error}") from None


def interpolate_states(directory, a: str, b: str, alphas=None) -> tuple[pd.DataFrame, str, str]:
    from tiltsweep.sweep.run.worker import with_local_data
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
    frame = pd.DataFrame(interpolate(with_local_data(TrialConfig.model_validate(config_a)), state_a, state_b, alphas))
    name = f"{a}__{b}".replace("@", "-at-")
    table = results.tables.write_interpolation(name, frame)
    from tiltsweep.analysis import figures

    drawn = figures.interpolation(frame, f"{results.name}: from {a} (alpha = 0) to {b} (alpha = 1)")
    figure = results.write_figure(f"interpolation_{name}.png", figures.save(drawn, "png"))
    return frame, table, figure
