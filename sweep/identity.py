"""A trial's identity: the hash of its canonical resolved config.

    trial_id = sha256(json(config with every default filled in, keys sorted))[:16]

The same point therefore always has the same id, whichever grid file or axis order produced it,
and 10 and 10.0 are the same amplitude (the typed config makes both 10.0). How often a trial is
checkpointed, with how many other points it is batched and which states are kept are how it
runs, not what it is: they are left out.
"""

from __future__ import annotations

import hashlib
import json

from tiltsweep.trainers.config import TrialConfig

NOT_IDENTITY = {
    ("training", "checkpoint_every"), ("training", "batch_points"), ("training", "keep_final_state"), ("training", "keep_checkpoints"),
}


def canonical_config(config: TrialConfig) -> dict:
    resolved = config.model_dump(mode="json")
    for section, key in NOT_IDENTITY:
        resolved[section].pop(key, None)
    return resolved


def trial_id(config: TrialConfig) -> str:
    text = json.dumps(canonical_config(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
