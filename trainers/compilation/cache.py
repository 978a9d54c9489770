"""JAX's persistent compilation cache: a worker loads the programs that an earlier worker on this
machine compiled (same shapes, same JAX, same XLA flags) instead of compiling them again. For the
spiral MLP that is ~2 s less per worker on one CPU core; re-runs, resumed sweeps and every
later sweep of the same shapes start training at once.

- Where: `$TILTSWEEP_COMPILE_CACHE`, else `$XDG_CACHE_HOME/tiltsweep/xla` (`~/.cache/...`), in
  a folder per CPU and XLA_FLAGS (a hash of the CPU's model and instruction-set flags, and of the
  XLA flags the process runs with), so that cluster nodes sharing a home directory but not a CPU
  never load each other's machine code, and a process restricted to another instruction set
  (`XLA_FLAGS=--xla_cpu_max_isa=AVX2`) or other XLA options never loads, nor waits for, a program
  built under different ones. (JAX's own cache key hashes XLA_FLAGS too; the folder makes it hold
  for the locks of trainers.compilation.share as well.)
  `TILTSWEEP_COMPILE_CACHE=off` turns the cache off.
- At most 1 GiB, least recently used entries go first. The cap also makes JAX lock the cache,
  so that two workers storing the same program do not read each other's half-written file.
- An unreadable entry (a worker killed while storing it) costs a warning and a compilation
  whenever it is met, never a wrong program; deleting the folder clears it.
- Workers that start one shape together split its programs between them (trainers.compilation.share,
  whose locks live in the folder's `claims/`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
from pathlib import Path
from typing import Mapping, Optional

MAX_BYTES = 1 << 30
OFF = ("off", "0", "false", "no")


IDENTITY_KEYS = ("model name", "flags", "Features", "CPU part")  # x86 and ARM names


def fingerprint(cpuinfo: str, machine: str) -> str:
    """A short hash of a CPU's architecture, model and instruction-set flags, from the text of
    /proc/cpuinfo: the same for every core and clock speed, different for another instruction set."""
    identity = [machine]
    for line in cpuinfo.splitlines():
        if line.split(":", 1)[0].strip() in IDENTITY_KEYS and line.strip() not in identity:
            identity.append(line.strip())
    return hashlib.sha256("\n".join(identity).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=1)  # asked once per trial; /proc/cpuinfo is long on big nodes
def cpu_fingerprint() -> str:
    """This machine's `fingerprint`."""
    try:
        with open("/proc/cpuinfo") as handle:
            cpuinfo = handle.read()
    except OSError:  # not Linux: the architecture and what the platform says of the processor
        cpuinfo = ""
    return fingerprint(cpuinfo, f"{platform.machine()} {platform.processor()}")


def xla_flags_fingerprint(xla_flags: str) -> str:
    """A short hash of an XLA_FLAGS value, the same whatever the order of its flags."""
    return hashlib.sha256(" ".join(sorted(xla_flags.split())).encode()).hexdigest()[:8]


def cache_directory(environ: Mapping[str, str] = os.environ) -> Optional[Path]:
    """This machine's cache folder for the XLA_FLAGS of `environ`, or None when
    TILTSWEEP_COMPILE_CACHE turns it off. Call it after the process has set its XLA_FLAGS."""
    root = environ.get("TILTSWEEP_COMPILE_CACHE", "").strip()
    if root.lower() in OFF:
        return None
    if not root:
        root = str(Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tiltsweep" / "xla")
    return Path(root).expanduser() / f"cpu-{cpu_fingerprint()}-xla-{xla_flags_fingerprint(environ.get('XLA_FLAGS', ''))}"


def enable_compile_cache(directory: Optional[Path]) -> None:
    """Cache every compiled program in `directory` (None: leave JAX's settings alone). Call
    before the first compilation; calling again with the same folder does nothing."""
    import jax  # here: the driver asks where the cache is (run.warmup) and loads no JAX

    if directory is None or jax.config.jax_compilation_cache_dir == str(directory):
        return
    directory.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    # JAX caches only compilations over 1 s and entries over a size by default; a worker's
    # training loop compiles in under a second and is worth keeping.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
