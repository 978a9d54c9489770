"""What code produced a result: the package version and, from a git checkout, the commit."""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """e.g. 'tiltsweep 0.1.0+g1a2b3c4' or 'tiltsweep 0.1.0+g1a2b3c4.dirty' (uncommitted changes)."""
    try:
        version = metadata.version("tiltsweep")
    except metadata.PackageNotFoundError:
        version = "unknown"
    source = Path(__file__).resolve().parents[2]  # the checkout: <repo>/sweep/run/provenance.py
    if not (source / ".git").exists():  # an install, perhaps inside another project's repository: not our commit
        return f"tiltsweep {version}"
    try:
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return f"tiltsweep {version}"
    if commit.returncode != 0:
        return f"tiltsweep {version}"
    return f"tiltsweep {version}+g{commit.stdout.strip()}" + (".dirty" if dirty.stdout.strip() else "")
