"""`python -m tiltsweep ...` is the `tiltsweep` command."""

from tiltsweep.sweep.commands.cli import main

raise SystemExit(main())
