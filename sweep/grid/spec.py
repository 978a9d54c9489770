"""Grid files: parsed and validated here, and nowhere else.

A grid file is one YAML mapping with the sections `name`, `data`, `model`, `optimizer`,
`schedule`, `training`, `loss`, `grid`, `resources` (and an optional top-level `seed`).
`grid` maps dotted config paths to lists of values; the sweep is their Cartesian product, in the
order the axes are written. `amplitude`, `period` and `seed` are short for `loss.amplitude`,
`loss.period` and `seed`. `grid` may also be a list of such mappings: the sweep is then the union
of their products (sub-grids, e.g. one over the loss's (A, T) and one over a cyclical learning
rate's (ratio, period)); a point two sub-grids share runs once.

`load_grid(path)` returns a GridSpec whose points are fully validated TrialConfigs, or raises
GridError naming the file and the field. It writes nothing.

What a grid file may be is bounded before anything walks it (sweep.grid.reading), and its name
is at most MAX_NAME_BYTES bytes long (it names the results directory).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import yaml
from pydantic import Field, ValidationError

from tiltsweep.sweep.grid.identity import trial_id
from tiltsweep.sweep.grid.messages import describe_validation_error, suggest
from tiltsweep.sweep.grid.reading import GridError, read_grid_text, parse_yaml_mapping
from tiltsweep.sweep.errors import Refused
from tiltsweep.sweep.store import SweepDescription
from tiltsweep.sweep.store.files import Unreachable, files_at, is_object_uri, parse_location
from tiltsweep.trainers.config import PositiveFloat, Section, TrialConfig, batch_signature
from tiltsweep.trainers.data import DatasetError, check_data

SHORT_NAMES = {"amplitude": "loss.amplitude", "period": "loss.period", "seed": "seed"}
CONFIG_SECTIONS = ("data", "model", "optimizer", "schedule", "training", "loss")
TOP_LEVEL_KEYS = ("name", *CONFIG_SECTIONS, "seed", "grid", "resources", "smoke")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # the whole name (fullmatch)
MAX_NAME_BYTES = 255  # NAME_MAX of common file systems; the results directory's place may allow fewer (store.location)
SMOKE_SUFFIX = "-smoke"


class Resources(Section):
    """What each trial asks of a Ray node, and how often a crashed trial is retried."""

    cpu: PositiveFloat = 1.0
    gpu: float = Field(default=0.0, ge=0)
    tpu: float = Field(default=0.0, ge=0)
    retries: int = Field(default=2, ge=0)


@dataclass(frozen=True, slots=True)
class GridPoint:
    """One training. Where settings it makes irrelevant differ (amplitude 1 at several periods,
    sweep.grid.identity), one training stands for several combinations of the grid's values:
    `axes` is the first of them, `stands_for` all of them.

    A point keeps its settings, not its validated config: `config` is `point_config(base,
    settings)`, validated anew on each use, so that a sweep's driver holds a few hundred bytes a
    point however many points it has (`base` is its sweep's, shared by every point). What packing
    needs of the config is kept, taken when the grid was validated: its batch signature (one
    string shared by the points that have it) and `training.batch_points`."""

    trial_id: str
    axes: dict[str, Any]  # axis path -> value at this point, as the config types it
    settings: dict[str, Any]  # axis path -> value at this point, as the grid file gives it
    base: dict = field(repr=False, compare=False)
    stands_for: tuple[dict[str, Any], ...] = ()
    signature: str = field(default="", repr=False)  # trainers.config.batch_signature
    batch_points: Any = "auto"

    @property
    def config(self) -> TrialConfig:
        return point_config(self.base, self.settings)

    def joined(self, other: GridPoint) -> GridPoint:
        """This training, standing also for what `other` (of the same trial id) stands for."""
        return replace(self, stands_for=self.stands_for + tuple(axes for axes in other.stands_for if axes not in self.stands_for))


def point_config(base: dict, settings: dict[str, Any]) -> TrialConfig:
    """The config of the point that sets each axis path of `settings` to its value in `base`, a
    grid file's config sections (the driver checked it; a worker builds its points' configs so)."""
    return TrialConfig.model_validate(with_settings(base, settings))


def with_settings(base: dict, settings: dict[str, Any]) -> dict:
    """A copy of `base` with each dotted path of `settings` set; KeyError(path, the part of it
    that is not a mapping) where one is not."""
    raw = copy.deepcopy(base)
    for path, value in settings.items():
        try:
            set_path(raw, path, value)
        except KeyError as error:
            raise KeyError(path, error.args[0]) from None
    return raw


@dataclass(frozen=True)
class SubGrid:
    axes: dict[str, list]  # axis path -> values, in file order
    trial_ids: tuple[str, ...]


@dataclass(frozen=True)
class GridSpec:
    name: str
    source: Union[Path, str]  # the grid file, or where a results directory keeps it (a URI)
    text: str  # the file as submitted
    axes: dict[str, list]  # axis path -> values, in file order (over all sub-grids)
    resources: Resources
    base: dict = field(repr=False)  # the config sections each point sets its settings in (GridPoint.config)
    points: tuple[GridPoint, ...]
    subgrids: tuple[SubGrid, ...] = ()
    base_dir: Optional[Path] = None  # the folder relative data paths were resolved against
    data_path_written: Optional[str] = None  # data.path as the file gives it, before it was resolved

    @property
    def columns(self) -> dict[str, str]:
        """Result column name -> axis path: the short names for amplitude, period and seed."""
        return {axis_column(path): path for path in self.axes}

    def description(self) -> SweepDescription:
        """What the results directory records of this sweep (sweep.json), by column name."""
        by_column = lambda axes: {axis_column(path): values for path, values in axes.items()}
        return SweepDescription(
            self.name, by_column(self.axes),
            [{"axes": by_column(sub.axes), "trial_ids": list(sub.trial_ids)} for sub in self.subgrids],
            {point.trial_id: by_column(point.axes) for point in self.points},
            {point.trial_id: [by_column(differing(axes, point.axes)) for axes in point.stands_for[1:]] for point in self.points if len(point.stands_for) > 1},
        )


def differing(axes: dict, reference: dict) -> dict:
    return {path: value for path, value in axes.items() if reference.get(path) != value}


def axis_column(path: str) -> str:
    return next((short for short, full in SHORT_NAMES.items() if full == path), path)


def load_grid(path, base_dir: Optional[Path] = None, check_data: bool = True, smoke: bool = False, added: Sequence[dict] = (),
              text: Optional[str] = None) -> GridSpec:
    """Parse and validate a grid file, or with `text` its content (then `path` only names it, as a
    results directory keeps it: a path or a URI). Relative data paths resolve against `base_dir`
    (default: the grid file's folder, or with `text` the working directory). `check_data` also
    refuses missing data directories and batches larger than the training set. `smoke` applies the
    file's `smoke` section (see `with_smoke_override`); without it, that section is ignored.
    `added`: points {column: value} of every axis that `tiltsweep refine` added to the sweep (its
    results directory keeps them), joined to the grid's one mapping."""
    if text is None:
        source = Path(path)
        text = read_grid_text(source)
        base_dir = base_dir or source.resolve().parent
    else:
        source, base_dir = path, base_dir or Path.cwd()
    document = parse_yaml_mapping(source, text)
    override = document.pop("smoke", None)
    if smoke:
        document = with_smoke_override(source, document, override)
        text = f"# {str(source).rsplit('/', 1)[-1]} with its smoke section applied\n" + yaml.safe_dump(document, sort_keys=False)
    unknown = [key for key in document if key not in TOP_LEVEL_KEYS]
    if unknown:
        raise GridError(source, unknown[0], f"unknown section{suggest(unknown[0], TOP_LEVEL_KEYS)}; "
                        f"a grid file has {', '.join(TOP_LEVEL_KEYS)}")
    name = document.get("name")
    if name is None:
        raise GridError(source, "name", "is required (it names the results directory)")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise GridError(source, "name", f"must be letters, digits, '.', '_' or '-' (it names the results directory), got {name!r}")
    if len(name.encode()) > MAX_NAME_BYTES:
        suffix = f" with --smoke's {SMOKE_SUFFIX!r}" if smoke else ""
        raise GridError(source, "name", f"is {len(name.encode()):,} bytes long{suffix}, more than the {MAX_NAME_BYTES} "
                        f"a results directory's name may have: shorten it")
    base = {key: document[key] for key in (*CONFIG_SECTIONS, "seed") if key in document}
    for section in CONFIG_SECTIONS:
        if section in base and not isinstance(base[section], dict):
            raise GridError(source, section, f"must be a mapping of settings, got {type(base[section]).__name__} {base[section]!r}")
    data_path = base.get("data", {}).get("path")  # as written (a mapping, checked above)
    resolve_data_path(source, base, base_dir)
    resources = parse_resources(source, document.get("resources"))
    parsed = [(prefix, *parse_axes(source, mapping, prefix)) for prefix, mapping in grid_mappings(source, document.get("grid"))]
    refuse_too_many(source, [math.prod(len(values) for values in sub_axes.values()) for _, sub_axes, _ in parsed])
    if added and len(parsed) > 1:
        raise GridError(source, "grid", "points added by `tiltsweep refine` need a grid of one mapping, not a list of them")
    subgrids, points, axes, datasets = [], {}, {}, {}
    for index, (prefix, sub_axes, written) in enumerate(parsed):
        sub_points = expand(source, base, sub_axes, written, prefix, datasets)
        if index == 0 and added:
            sub_axes, refined = with_added_points(source, base, sub_axes, added, datasets)
            merged: dict[str, GridPoint] = {}
            for point in sub_points + refined:
                add_point(merged, point)
            sub_points = list(merged.values())
        subgrids.append(SubGrid(sub_axes, tuple(p.trial_id for p in sub_points)))
        for point in sub_points:
            add_point(points, point)
        for path, values in sub_axes.items():
            axes.setdefault(path, [])
            axes[path] += [v for v in values if v not in axes[path]]
    points = list(points.values())
    if check_data:
        check_datasets(source, datasets.values())
    return GridSpec(name, source, text, axes, resources, base, tuple(points), tuple(subgrids), base_dir, data_path)


def with_added_points(source: Path, base: dict, axes: dict[str, list], added: Sequence[dict],
                      datasets: Optional[dict] = None) -> tuple[dict[str, list], list[GridPoint]]:
    """(the axes with the added points' values appended, the added points, validated)."""
    axes = {path: list(values) for path, values in axes.items()}
    points: dict[str, GridPoint] = {}
    for index, given in enumerate(added):
        at = {SHORT_NAMES.get(column, column): value for column, value in given.items()}
        if set(at) != set(axes):
            raise GridError(source, f"refinements[{index}]", f"names the axes {sorted(at)}, the grid has {sorted(axes)}")
        single = {path: [at[path]] for path in axes}
        for point in expand(source, base, single, {path: f"refinements[{index}].{path}" for path in axes}, f"refinements[{index}]", datasets):
            add_point(points, point)
        for path in axes:
            axes[path] += [] if at[path] in axes[path] else [at[path]]
    return axes, list(points.values())


MAX_POINTS = 1_000_000
MAX_POINTS_VARIABLE = "TILTSWEEP_MAX_POINTS"


def refuse_too_many(source: Path, sizes: list[int]) -> None:
    """Refuse, before expanding anything, a sweep of more than MAX_POINTS points (the product of
    each sub-grid's axis lengths, summed; TILTSWEEP_MAX_POINTS changes the limit)."""
    try:
        limit = int(os.environ.get(MAX_POINTS_VARIABLE) or MAX_POINTS)
    except ValueError:
        raise Refused(f"{MAX_POINTS_VARIABLE}={os.environ[MAX_POINTS_VARIABLE]!r}: not a whole number of points") from None
    if sum(sizes) > limit:
        raise GridError(source, "grid", f"has {sum(sizes):,} points, more than the limit of {limit:,} "
                        f"(set {MAX_POINTS_VARIABLE} to allow more)")


def with_smoke_override(source: Path, document: dict, override) -> dict:
    """A grid file shrunk to a smoke run by its own `smoke` section (big_vision's `runlocal`):
    each section given there is merged into the file's setting by setting, except `grid`, which
    it replaces whole; the name gains `-smoke` (a results directory of its own)."""
    if override is None:
        raise GridError(source, "smoke", "no such section: --smoke needs one (the settings that shrink this sweep to a smoke run)")
    if not isinstance(override, dict):
        raise GridError(source, "smoke", f"must be a mapping of sections, got {type(override).__name__} {override!r}")
    merged = copy.deepcopy(document)
    for section, settings in override.items():
        if section in ("smoke", "name") or section not in TOP_LEVEL_KEYS:
            raise GridError(source, f"smoke.{section}", f"cannot be overridden{suggest(section, TOP_LEVEL_KEYS)}")
        if isinstance(settings, dict) and isinstance(merged.get(section), dict) and section != "grid":
            merged[section] = {**merged[section], **settings}
        else:
            merged[section] = settings
    if isinstance(merged.get("name"), str):
        merged["name"] += SMOKE_SUFFIX
    return merged


def resolve_data_path(source: Path, base: dict, base_dir: Path) -> None:
    """The data path as a local path (file://PATH as PATH), made absolute against `base_dir`; an
    object-storage URI stays as it is, and a URI tiltsweep cannot read is refused (GridError)."""
    data = base.get("data")
    if isinstance(data, dict) and isinstance(data.get("path"), str) and not is_object_uri(data["path"]):
        try:
            _, path = parse_location(data["path"])
        except Unreachable as error:
            raise GridError(source, "data.path", str(error)) from None
        data["path"] = str((base_dir / Path(path).expanduser()).resolve())


def grid_mappings(source: Path, grid) -> list[tuple[str, dict]]:
    """[(field prefix, mapping)]: the one mapping, or each mapping of a list of sub-grids."""
    if grid is None:
        return [("grid", {})]
    if isinstance(grid, list):
        if not grid:
            raise GridError(source, "grid", "is an empty list: give at least one mapping of axes")
        for index, mapping in enumerate(grid):
            if not isinstance(mapping, dict):
                raise GridError(source, f"grid[{index}]", f"must map config paths to lists of values, got {type(mapping).__name__}")
        return [(f"grid[{index}]", mapping) for index, mapping in enumerate(grid)]
    if not isinstance(grid, dict):
        raise GridError(source, "grid", f"must map config paths to lists of values (or be a list of such mappings), got {type(grid).__name__}")
    return [("grid", grid)]


def parse_axes(source: Path, grid: dict, prefix: str = "grid") -> tuple[dict[str, list], dict[str, str]]:
    """(axis path -> values, axis path -> the name the file used for it)."""
    axes: dict[str, list] = {}
    written: dict[str, str] = {}
    for key, values in grid.items():
        path = SHORT_NAMES.get(str(key), str(key))
        field = f"{prefix}.{key}"
        if path in axes:
            raise GridError(source, field, f"is the same axis as {written[path][len(prefix) + 1:]!r} ({path}): give it once")
        if not isinstance(values, list):
            raise GridError(source, field, f"must be a list of values, e.g. [1, 10], got {values!r}")
        if not values:
            raise GridError(source, field, "is empty: an axis needs at least one value")
        seen = set()
        for value in values:
            canonical = json.dumps(normalized(value), sort_keys=True)
            if canonical in seen:
                raise GridError(source, field, f"value {value!r} appears twice")
            seen.add(canonical)
        axes[path] = values
        written[path] = f"{prefix}.{key}"
    return axes, written


def normalized(value):
    """Equal settings compare equal: 10 and 10.0 are one value."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [normalized(item) for item in value]
    if isinstance(value, dict):
        return {key: normalized(item) for key, item in value.items()}
    return value


def parse_resources(source: Path, raw) -> Resources:
    try:
        return Resources.model_validate(raw or {})
    except ValidationError as error:
        raise GridError(source, *describe_validation_error(error, "resources", schema=Resources)) from None


def set_path(config: dict, path: str, value) -> None:
    """Set `config` at a dotted path, making the mappings it lacks; KeyError(the path's part that
    is not a mapping, dotted: `model.width`) where one is not."""
    *parents, leaf = path.split(".")
    node = config
    for depth, part in enumerate(parents):
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {} if child is None else child
        if not isinstance(child, dict):
            raise KeyError(".".join(parents[: depth + 1]))
        node = child
    node[leaf] = value


def expand(source: Path, base: dict, axes: dict[str, list], written: dict[str, str], prefix: str = "grid",
           datasets: Optional[dict] = None) -> list[GridPoint]:
    """Every point of the product, validated; the first invalid one raises GridError. An error
    in the first point is a problem of the file; a later one depends on the grid's values, so
    its message says at which point. `datasets` collects the distinct (data, batch size) settings
    of the points, for check_datasets."""
    points: dict[str, GridPoint] = {}
    full_ids: dict[str, dict] = {}
    for index, values in enumerate(itertools.product(*axes.values())):
        at = dict(zip(axes, values))
        try:
            raw = with_settings(base, at)
        except KeyError as error:
            path, not_a_section = error.args
            raise GridError(source, written[path], f"is not a config path ({not_a_section} is not a section)") from None
        try:
            config = TrialConfig.model_validate(raw)
        except ValidationError as error:
            field, message = describe_validation_error(error, raw=raw, show_input=False)
            if field in at:
                raise GridError(source, written[field], f"value {at[field]!r}: {message}") from None
            field, message = describe_validation_error(error, raw=raw)
            where = f" (at grid point {format_point(at)})" if index > 0 else ""
            raise GridError(source, field, message + where) from None
        typed = {path: read_path(config, path) for path in at}
        full_id = trial_id(config, effective=False)
        if full_id in full_ids:
            raise GridError(source, prefix, f"points {format_point(full_ids[full_id])} and {format_point(typed)} are the same configuration")
        full_ids[full_id] = typed
        if datasets is not None:
            datasets.setdefault((config.data.model_dump_json(), config.optimizer.batch_size), (config.data, config.optimizer.batch_size))
        # the point's dicts are shared where equal: a point's memory is what differs
        settings = typed if at == typed else at
        add_point(points, GridPoint(trial_id(config), typed, settings, base, (typed,),
                                    sys.intern(batch_signature(config)), config.training.batch_points))
    return list(points.values())


def add_point(points: dict[str, GridPoint], point: GridPoint) -> None:
    """Add a point to trial id -> point; a training already there then stands for it as well."""
    points[point.trial_id] = points[point.trial_id].joined(point) if point.trial_id in points else point


def read_path(config: TrialConfig, path: str):
    node: Any = config
    for part in path.split("."):
        node = getattr(node, part)
    return node


def format_point(at: dict) -> str:
    return ", ".join(f"{path}={value!r}" for path, value in at.items())


def check_datasets(source: Path, datasets) -> None:
    """Refuse missing data directories (on a disk or on object storage) and batches larger than
    the training set before running. datasets: the distinct (data config, batch size) pairs of the
    sweep's points."""
    for data, batch_size in datasets:
        try:
            stored = is_object_uri(getattr(data, "path", ""))
            check_data(data, batch_size, local=not stored)
            if stored:
                check_stored_cifar10(data.path)
        except DatasetError as error:
            raise GridError(source, error.field, error.message) from None


def check_stored_cifar10(location: str) -> None:
    """DatasetError where a CIFAR-10 folder on object storage cannot be reached or lacks a batch."""
    from tiltsweep.trainers.data import CIFAR10_TEST_BATCH, CIFAR10_TRAIN_BATCHES

    try:
        there = set(files_at(location).names(""))
    except (Unreachable, OSError) as error:
        raise DatasetError(f"{location}: cannot be read ({' '.join(str(error).split())[:200]})") from None
    missing = [name for name in [*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH] if name not in there]
    if missing:
        raise DatasetError(f"{location}: not a cifar-10-batches-py folder, missing {', '.join(missing)}")
