"""A resumable snapshot of one training run, as bytes.

It holds the full train state (params, optimizer state, batch-norm state, step, base PRNG key,
F(t - 1); the data order is a function of the key and the epoch), the evaluations so far and the
wall time spent so far. Where the bytes are kept is the caller's business.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.serialization


@dataclass
class Checkpoint:
    epoch: int
    state: dict  # flax state dict of the TrainState
    history: list[dict]
    wall_seconds: float

    def to_bytes(self) -> bytes:
        return flax.serialization.msgpack_serialize({
            "epoch": self.epoch,
            "state": self.state,
            "history": self.history,
            "wall_seconds": self.wall_seconds,
        })

    @classmethod
    def from_bytes(cls, data: bytes) -> "Checkpoint":
        """Raises ValueError on bytes that are not a checkpoint (truncated, garbage)."""
        try:
            payload = flax.serialization.msgpack_restore(data)
            return cls(int(payload["epoch"]), payload["state"], list(payload["history"]), float(payload["wall_seconds"]))
        except Exception as error:
            raise ValueError(f"not a tiltsweep checkpoint ({type(error).__name__}: {error})") from None

