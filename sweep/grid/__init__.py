"""The grid: grid files read, validated and expanded into typed points, each with its trial id;
the one place a grid file is parsed. Everything after it receives these typed objects.

    spec = load_grid("grids/quickstart.yaml")   # GridSpec, or GridError naming the file and field
    spec.points                                 # GridPoints: trial id, axis values, config

reading (the YAML, strictly and within limits), spec (validation and expansion into points),
messages (a validation error as one line), identity (a trial's id).
"""

from tiltsweep.sweep.grid.spec import (
    SHORT_NAMES, GridError, GridPoint, GridSpec, Resources, axis_column, load_grid, point_config, with_settings,
)

__all__ = ["GridError", "GridPoint", "GridSpec", "Resources", "SHORT_NAMES", "axis_column", "load_grid", "point_config", "with_settings"]
