"""Counts XLA compilations in this process by the jitted function's name.

Counting starts when this module is imported (trainers imports it), through JAX's monitoring
events, so the counts are what XLA really did, not what the code intends. A program loaded from
the persistent compilation cache (trainers.compilation.cache) counts as a compilation too: it is one
executable built for this process.
"""

from __future__ import annotations

from collections import Counter

from jax import monitoring

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_counts: Counter = Counter()


def _count(event: str, duration: float, **labels) -> None:
    if event == BACKEND_COMPILE_EVENT:
        _counts[labels.get("fun_name", "?")] += 1


monitoring.register_event_duration_secs_listener(_count)


TRAINING_LOOPS = ("jit(_train_epochs)", "jit(_train_then_evaluate)", "jit(_host_step)")


def compilation_counts() -> Counter:
    """{"jit(_train_then_evaluate)": 1, ...}: compilations so far in this process."""
    return Counter(_counts)


def training_loop_compilations() -> int:
    """Compilations of the training loop (with or without the evaluation after it) so far."""
    return sum(_counts[name] for name in TRAINING_LOOPS)
