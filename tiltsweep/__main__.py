"""`python -m tiltsweep ...` is the `tiltsweep` command."""

from tiltsweep.sweep.cli import main

raise SystemExit(main())
