"""A trial's identity: the hash of its canonical *effective* config.

    trial_id = sha256(json(effective config, keys sorted))[:16]

The effective config is the resolved config (every default filled in) without the settings that
do not change what is trained:
- how a trial runs: how often it is checkpointed, with how many other points it is batched,
  which states are kept, how its MLP lays out its products (`model.layout`);
- settings added since ids were first given, at their default (`model.init`), so that earlier
  results directories keep their ids;
- what its other settings make irrelevant: with amplitude 1 the loss is plain cross-entropy, so
  its period, period unit, shape and stop epoch do nothing (DESIGN.md).

The same training therefore always has the same id, whichever grid file or axis order produced
it: 10 and 10.0 are the same amplitude (the typed config makes both 10.0), and a grid's A = 1
points at several periods are one trial per seed.
"""

from __future__ import annotations

import hashlib
import json

from tiltsweep.trainers.config import TrialConfig

NOT_IDENTITY = {
    ("training", "checkpoint_every"), ("training", "batch_points"), ("training", "keep_final_state"), ("training", "keep_checkpoints"),
    ("model", "layout"),
}
IRRELEVANT_WITHOUT_OSCILLATION = ("period", "period_unit", "shape", "stop_oscillation_epoch")
# Settings added after trials were first named, left out at their default so that the points of
# earlier results directories keep their ids.
ADDED_LATER = {("model", "init"): "lecun_normal"}


def canonical_config(config: TrialConfig, effective: bool = True) -> dict:
    """The config that names the trial; `effective=False` keeps the settings amplitude 1 makes
    irrelevant (two grid points equal so are the same configuration, given twice)."""
    resolved = config.model_dump(mode="json")
    for section, key in NOT_IDENTITY:
        resolved[section].pop(key, None)
    for (section, key), default in ADDED_LATER.items():
        if resolved[section].get(key) == default:
            resolved[section].pop(key)
    if effective and config.loss.amplitude == 1:
        for key in IRRELEVANT_WITHOUT_OSCILLATION:
            resolved["loss"].pop(key)
    return resolved


def trial_id(config: TrialConfig, effective: bool = True) -> str:
    text = json.dumps(canonical_config(config, effective), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
