"""`python tests/kill_before_rename.py NAME N tiltsweep-args...`: the tiltsweep command in a process
that SIGKILLs itself just before its Nth rename of a written file called NAME, or of one into a
folder called NAME, into place (the moment between a write and its rename, for tests of atomic
writes; production code has no hook)."""

import os
import signal
import sys
from pathlib import Path

from tiltsweep.sweep.commands.cli import main

name, hit = sys.argv[1], int(sys.argv[2])
renames, real_replace = [0], os.replace


def replace_or_die(source, target, *args, **kwargs):
    if name in (Path(target).name, Path(target).parent.name):
        renames[0] += 1
        if renames[0] == hit:
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(source, target, *args, **kwargs)


os.replace = replace_or_die
sys.exit(main(sys.argv[3:]))
