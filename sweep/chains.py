"""Which groups of grid points (sweep.groups) one Tune trial trains, one after another.

Every Tune trial costs ~30 ms of the driver's time (a placement group, a reset of the reused
actor, a round trip) while its worker waits: 6% of a sweep whose points train in half a second.
So a trial trains a *chain* of groups, sized by guided self-scheduling: with `remaining` groups
not yet in a chain and `slots` trials running side by side,

    chain length = min(LONGEST, ceil(remaining / (SHARE x slots)))

Chains start long and end as single groups, so the slots run out of work together. Chains are
cut only when a trial may be retried (`retries` >= 1): a chain whose worker dies is retried, and
its worker trains the groups it never started first (sweep.worker.run_chain). A chain has the
retries of one trial, so two points of one chain that each kill their worker every time share
them. A single group's chain has the group's id; a longer one a hash of its groups' ids.
"""

from __future__ import annotations

import hashlib
import math
from typing import Sequence, TypeVar

SHARE = 4  # each chain takes at most a quarter of a slot's fair share of the remaining groups
LONGEST = 8

Group = TypeVar("Group")


def plan_chains(groups: Sequence[Group], slots: int, retries: int) -> list[list[Group]]:
    if retries < 1:
        return [[group] for group in groups]
    chains, start = [], 0
    while start < len(groups):
        length = min(LONGEST, math.ceil((len(groups) - start) / (SHARE * max(1, slots))))
        chains.append(list(groups[start : start + length]))
        start += length
    return chains


def chain_id(group_ids: Sequence[str]) -> str:
    if len(group_ids) == 1:
        return group_ids[0]
    return "c" + hashlib.sha256(",".join(group_ids).encode()).hexdigest()[:15]
