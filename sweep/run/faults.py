"""Deliberate faults, for tests of recovery: the one hook, run in the worker at every evaluation
of a point. Off unless TILTSWEEP_FAULTS is set where the workers start (the shell of a local
`tiltsweep run`, whose Ray's workers inherit it; that of `ray start` on a cluster's node).

TILTSWEEP_FAULTS is a JSON list of faults:
    [{"where": {"amplitude": 10, "seed": 1}, "epoch": 200, "action": "raise", "times": 1}]
- where: axis values (short names allowed) or {"trial_id": "..."}: which trials it hits;
- epoch: fire at the first evaluation at or after this epoch;
- action: "raise" (an exception in the trial), "exit" (the worker process exits at once),
  "kill" (the worker process sends itself SIGKILL) or "hold" (the trial waits there until the
  file named by "until" exists: a test makes the moment it needs happen, then releases it);
- times: how many attempts of each matching trial it hits (default 1); counted with marker
  files in the results directory's faults folder (store: `faults_folder`,
  `<action>-<index>-<trial>-<firing>`), so it holds across retries in new processes.
Faults of the driver itself (a SIGKILL between a write and its rename) are the tests' own
(tests/kill_before_rename.py): no production module checks for one.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Optional

from tiltsweep.sweep.grid import SHORT_NAMES

ENVIRONMENT_VARIABLE = "TILTSWEEP_FAULTS"


class InjectedFault(RuntimeError):
    pass


def plan_from_environment() -> list[dict]:
    text = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    return json.loads(text) if text else []


def matches(where: dict, trial_id: str, axes: dict) -> bool:
    for key, value in where.items():
        if key == "trial_id":
            if value != trial_id:
                return False
        elif axes.get(SHORT_NAMES.get(key, key)) != value:
            return False
    return True


class Faults:
    def __init__(self, plan: list[dict], trial_id: str, axes: dict, marker_dir: Path):
        self.trial_id, self.marker_dir = trial_id, Path(marker_dir)
        self.pending = [(index, fault) for index, fault in enumerate(plan) if matches(fault.get("where", {}), trial_id, axes)]

    def at_epoch(self, epoch: int) -> None:
        for index, fault in self.pending:
            if epoch >= fault.get("epoch", 0) and self.claim(f"{fault['action']}-{index}", fault.get("times", 1)):
                self.fire(fault, epoch)

    def claim(self, name: str, times: int) -> bool:
        """Take one of the fault's `times` firings for this trial (a marker file named after the
        fault's action and place in the plan, the trial and the firing); False when all are used."""
        self.marker_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(times):
            try:
                os.close(os.open(self.marker_dir / f"{name}-{self.trial_id}-{attempt}", os.O_CREAT | os.O_EXCL))
                return True
            except FileExistsError:
                continue
        return False

    def fire(self, fault: dict, epoch: int) -> None:
        action = fault["action"]
        if action == "hold":
            while not os.path.exists(fault["until"]):
                time.sleep(0.05)
            return
        if action == "raise":
            raise InjectedFault(f"injected fault at epoch {epoch}")
        if action == "exit":
            os._exit(13)
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise ValueError(f"unknown fault action {action!r}")


def faults_for(marker_dir: Path, trial_id: str, axes: dict) -> Optional[Faults]:
    """The faults this process's TILTSWEEP_FAULTS aims at one point (None: none); their firings
    are counted in `marker_dir`."""
    plan = plan_from_environment()
    if not plan:
        return None
    return Faults(plan, trial_id, axes, marker_dir)
