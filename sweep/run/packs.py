"""Packs: the unit of work. A pack is the list of grid points one Ray Tune trial trains on one
device, in blocks: the points of a block train together in one compiled program (vmap), the
blocks one after another. A block's points share a trainers.batch_signature and the epoch they
resume from; it holds at most `training.batch_points` of them:

- an integer: that many;
- `auto` (the default): 1 on a CPU, where vmapping does not pay (benchmarks/packs.py); on a GPU
  or TPU, the points of one batch signature shared among the slots (trials side by side), as a
  power of two, at most `MOST_VMAPPED`: one slot trains a 910-point diagram as one block, eight
  train eight blocks of 128. A block of a few hundred points takes an accelerator about the
  time of one (issue 30's H200: 70 us a step for 64 points, 443 us for 910), so wide blocks pay
  while every slot has one. The worker lowers the width further where the points would not fit
  in the trial's share of the device's memory (`block_width`).

How many points a pack holds: each Tune trial costs the driver ~30 ms (a placement group, a
reset of the reused actor, a round trip) while its worker waits, so a pack holds many points,
sized by guided self-scheduling: with `remaining` points not yet in a pack and `slots` trials
running side by side,

    pack size = min(LONGEST, ceil(remaining / (SHARE x slots)))

rounded up to whole blocks (on an accelerator, where blocks are wide, a pack is usually one
block). Packs start long and end short, so the slots run out of work together. With `retries` = 0
a pack is one block: a pack whose worker dies is not retried, and its unstarted points would wait
for the next run. A retried pack trains its never-started points first (run.worker.run_pack), so
a point that kills its worker cannot use up the others' retries (run.retries). Packing is how
points run, never what they are: a point keeps its id, its checkpoints and its record in any
pack, and a later run may pack the remaining points anew.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from tiltsweep.sweep.grid import GridPoint, GridSpec

SHARE = 4  # a pack takes at most a quarter of a slot's fair share of the remaining points
LONGEST = 64
MOST_VMAPPED = 1024  # issue 30's H200: 1.22 M point-steps/s at 256, 2.05 M at 910, 2.12 M at 2,048


@dataclass(frozen=True)
class Pack:
    pack_id: str
    points: tuple[GridPoint, ...]


def accelerated(spec: GridSpec) -> bool:
    return spec.resources.gpu > 0 or spec.resources.tpu > 0


def plan_packs(points: list[GridPoint], slots: int, retries: int, on_accelerator: bool) -> list[Pack]:
    """The points, same-signature ones next to each other (in grid order otherwise), cut into packs."""
    by_signature: dict[str, list[GridPoint]] = {}
    for point in points:
        by_signature.setdefault(point.signature, []).append(point)
    ordered = [point for members in by_signature.values() for point in members]
    shared = {signature: math.ceil(len(members) / max(1, slots)) for signature, members in by_signature.items()}
    packs, start = [], 0
    while start < len(ordered):
        block = requested_width(ordered[start], on_accelerator, shared[ordered[start].signature])
        if retries < 1:
            size = block
        else:
            size = min(max(LONGEST, block), math.ceil((len(ordered) - start) / (SHARE * max(1, slots))))
            size = block * math.ceil(size / block)  # whole blocks
        members = tuple(ordered[start : start + size])
        packs.append(Pack(pack_id(members), members))
        start += size
    return packs


def requested_width(point: GridPoint, on_accelerator: bool, slot_share: int) -> int:
    """The most points a block of this point's may hold, as the grid asks (before memory);
    `auto` on an accelerator: `slot_share` (a slot's share of the points of its signature) as a
    power of two, at most MOST_VMAPPED."""
    asked = point.batch_points
    if asked != "auto":
        return asked
    return min(MOST_VMAPPED, 1 << (max(1, slot_share) - 1).bit_length()) if on_accelerator else 1


def pack_id(points) -> str:
    return "p" + hashlib.sha256(",".join(p.trial_id for p in points).encode()).hexdigest()[:15]


def block_width(asked, point_bytes: int, device_bytes: int) -> int:
    """How many points one block trains together. `auto`: 1 on a CPU (device_bytes 0); on an
    accelerator, as many as fit in half of `device_bytes`, what this trial's process may allocate
    (JAX's bytes_limit: a fractional GPU share is in it), the rest for the data and what the
    count leaves out, at `point_bytes` each (trainers.training.point_bytes), at most MOST_VMAPPED."""
    if asked != "auto":
        return int(asked)
    if device_bytes <= 0 or point_bytes <= 0:
        return 1
    return max(1, min(MOST_VMAPPED, int(0.5 * device_bytes // point_bytes)))


def trial_share(spec: GridSpec) -> dict:
    """What one trial has of a node, as run.worker.configure_accelerator takes it: {cpu, gpu, tpu}."""
    return {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu, "tpu": spec.resources.tpu}


def trial_resources(spec: GridSpec) -> dict:
    """What one trial asks of a node, as Tune's resources take it: trial_share, with a TPU share
    under Ray's name for it ("TPU", a custom resource) and only where there is one."""
    share = trial_share(spec)
    tpu = share.pop("tpu")
    return {**share, "TPU": tpu} if tpu else share


def trials_at_once(spec: GridSpec, available: dict) -> int:
    """How many trials the cluster's resources (`ray.cluster_resources()`) run side by side."""
    needs = trial_resources(spec)
    names = {"cpu": "CPU", "gpu": "GPU", "TPU": "TPU"}
    fits = [int(available.get(names[name], 0) // amount) for name, amount in needs.items() if amount > 0]
    return max(1, min(fits, default=1))
