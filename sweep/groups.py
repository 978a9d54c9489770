"""Which grid points train together (training.batch_points > 1) in one Tune trial.

Points can share one compiled program when their trainers.batch_signature is equal (the same
shapes, data and evaluation schedule; A, T, seeds and learning rates may differ). Points are
grouped by signature, in grid order, into chunks of at most `batch_points`; with the default of 1
every point is its own group. A group's id is a hash of its members' trial ids.
"""

from __future__ import annotations

import hashlib

from tiltsweep.sweep.grid import GridPoint
from tiltsweep.trainers.training import batch_signature


def plan_groups(points: list[GridPoint]) -> list[list[GridPoint]]:
    by_signature: dict[str, list[GridPoint]] = {}
    for point in points:
        by_signature.setdefault(batch_signature(point.config), []).append(point)
    groups = []
    for members in by_signature.values():
        size = min(point.config.training.batch_points for point in members)
        groups.extend(members[i : i + size] for i in range(0, len(members), size))
    return groups


def group_id(members: list[GridPoint]) -> str:
    if len(members) == 1:
        return members[0].trial_id
    return "g" + hashlib.sha256(",".join(p.trial_id for p in members).encode()).hexdigest()[:15]
