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

What a grid file may be is bounded before anything walks it, so that no file makes tiltsweep
hang, exhaust memory or end in a traceback: at most MAX_GRID_CHARS characters (read no further),
at most MAX_NODES YAML nodes and MAX_DEPTH levels deep with every alias counted as all that its
anchor holds (PyYAML shares what an alias names, so a "billion laughs" file is small until
something walks, copies or prints it), integer literals of at most MAX_INTEGER_CHARS characters,
and a `name` of at most MAX_NAME_BYTES bytes (it names the results directory). StrictLoader
counts while it composes the document, and refuses the moment a limit is passed, before any
Python object is built.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import json
import math
import os
import re
import sys
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml
from pydantic import Field, ValidationError

from tiltsweep.sweep.errors import Refused
from tiltsweep.sweep.grid.identity import trial_id
from tiltsweep.sweep.store import SweepDescription
from tiltsweep.trainers.config import PositiveFloat, Section, TrialConfig, batch_signature
from tiltsweep.trainers.data import DatasetError, check_data

SHORT_NAMES = {"amplitude": "loss.amplitude", "period": "loss.period", "seed": "seed"}
CONFIG_SECTIONS = ("data", "model", "optimizer", "schedule", "training", "loss")
TOP_LEVEL_KEYS = ("name", *CONFIG_SECTIONS, "seed", "grid", "resources", "smoke")
TAGGED_SECTIONS = ("data", "model", "schedule")  # pydantic puts the `name` tag into error paths
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_NAME_BYTES = 255  # NAME_MAX of common file systems; the results directory's place may allow fewer (sweep.runner)
SMOKE_SUFFIX = "-smoke"


class GridError(Refused, ValueError):
    """A grid file that cannot run. str() is one line: `file: field: what is wrong`."""

    def __init__(self, source, field: Optional[str], message: str):
        self.source, self.field, self.message = str(source), field, message
        super().__init__(f"{self.source}: {field}: {message}" if field else f"{self.source}: {message}")


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
    """A copy of `base` with each dotted path of `settings` set; KeyError(path) where a part of
    the path is not a mapping."""
    raw = copy.deepcopy(base)
    for path, value in settings.items():
        try:
            set_path(raw, path, value)
        except KeyError:
            raise KeyError(path) from None
    return raw


@dataclass(frozen=True)
class SubGrid:
    axes: dict[str, list]  # axis path -> values, in file order
    trial_ids: tuple[str, ...]


@dataclass(frozen=True)
class GridSpec:
    name: str
    source: Path
    text: str  # the file as submitted
    axes: dict[str, list]  # axis path -> values, in file order (over all sub-grids)
    resources: Resources
    base: dict = field(repr=False)  # the config sections each point sets its settings in (GridPoint.config)
    points: tuple[GridPoint, ...]
    subgrids: tuple[SubGrid, ...] = ()

    @property
    def columns(self) -> dict[str, str]:
        """Result column name -> axis path: the short names for amplitude, period and seed."""
        return {axis_column(path): path for path in self.axes}

    def point(self, trial_id: str) -> GridPoint:
        return next(p for p in self.points if p.trial_id == trial_id)

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


def load_grid(path, base_dir: Optional[Path] = None, check_data: bool = True, smoke: bool = False, added: Sequence[dict] = ()) -> GridSpec:
    """Parse and validate a grid file. Relative data paths resolve against `base_dir`
    (default: the grid file's folder). `check_data` also refuses missing data directories and
    batches larger than the training set. `smoke` applies the file's `smoke` section (see
    `with_smoke_override`); without it, that section is ignored. `added`: points {column: value}
    of every axis that `tiltsweep refine` added to the sweep (its results directory keeps them),
    joined to the grid's one mapping."""
    source = Path(path)
    text = read_grid_text(source)
    document = parse_yaml_mapping(source, text)
    override = document.pop("smoke", None)
    if smoke:
        document = with_smoke_override(source, document, override)
        text = f"# {source.name} with its smoke section applied\n" + yaml.safe_dump(document, sort_keys=False)
    unknown = [key for key in document if key not in TOP_LEVEL_KEYS]
    if unknown:
        raise GridError(source, unknown[0], f"unknown section{suggest(unknown[0], TOP_LEVEL_KEYS)}; "
                        f"a grid file has {', '.join(TOP_LEVEL_KEYS)}")
    name = document.get("name")
    if name is None:
        raise GridError(source, "name", "is required (it names the results directory)")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise GridError(source, "name", f"must be letters, digits, '.', '_' or '-' (it names the results directory), got {name!r}")
    if len(name.encode()) > MAX_NAME_BYTES:
        suffix = f" with --smoke's {SMOKE_SUFFIX!r}" if smoke else ""
        raise GridError(source, "name", f"is {len(name.encode()):,} bytes long{suffix}, more than the {MAX_NAME_BYTES} "
                        f"a results directory's name may have: shorten it")
    base = {key: document[key] for key in (*CONFIG_SECTIONS, "seed") if key in document}
    for section in CONFIG_SECTIONS:
        if section in base and not isinstance(base[section], dict):
            raise GridError(source, section, f"must be a mapping of settings, got {type(base[section]).__name__} {base[section]!r}")
    resolve_data_path(base, base_dir or source.resolve().parent)
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
    return GridSpec(name, source, text, axes, resources, base, tuple(points), tuple(subgrids))


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
    limit = int(os.environ.get(MAX_POINTS_VARIABLE) or MAX_POINTS)
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


# 64 KiB: the shipped grid files have 1-2 KiB, 4,000 values in axes (4 billion points) 20 KiB.
# PyYAML in pure Python (which lets StrictLoader count as it composes) reads dense YAML at some
# 150 KiB a CPU second, so that a file is read within half a second, then refused if need be.
MAX_GRID_CHARS = 64 * 1024
MAX_NODES = 100_000  # keys, values and items, each alias counted as all its anchor holds
MAX_DEPTH = 100  # nested collections; PyYAML composes (and copy, repr and pydantic walk) recursively
MAX_INTEGER_CHARS = 1_000  # fewer digits than Python's 4,300 for int <-> str, in any base YAML allows
FIELD_PARTS = 8  # of a field named in such a refusal: `resources.k.k.k.k.k.k.k...` for one nested 1,000 deep
INTEGER_TAG, MERGE_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:merge"


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key, first_line: int, again_line: int):
        self.key, self.first_line, self.again_line = key, first_line, again_line


class Oversized(yaml.YAMLError):
    """A document past one of the limits: `field` (dotted, or None for the whole document) is
    where composing it passed the limit, `problem` says which, at `mark`."""

    def __init__(self, field: Optional[str], problem: str, mark):
        self.field, self.problem, self.mark = field, problem, mark
        super().__init__(f"{field}: {problem}")


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last
    one silently: a second `grid:` would replace the first), and refusing with Oversized, while
    it composes the document and before it constructs any of it, a document of more than
    MAX_NODES nodes or nested more than MAX_DEPTH deep once its aliases are expanded (those of
    merge keys `<<:` too), with an alias inside what its anchor names, or with an integer literal
    of more than MAX_INTEGER_CHARS characters. A scalar its tag cannot read (`!!int abc`) is a
    ConstructorError."""

    def __init__(self, stream):
        super().__init__(stream)
        self.path: list = []  # the `index` of compose_node, from the root to the node being composed
        self.expanded = 0  # nodes composed so far, an alias counted as all its anchor holds
        self.reached = 0  # the deepest level reached in the node being composed, through aliases too
        self.anchored: dict[str, tuple[int, int]] = {}  # anchor -> (nodes, levels) of what it names, once composed

    def compose_node(self, parent, index):
        event = self.peek_event()
        self.path.append(index)
        depth = len(self.path)
        if depth > MAX_DEPTH:
            raise self.oversized(f"is nested past the limit of {MAX_DEPTH} levels", event.start_mark)
        outer, self.reached, before = self.reached, depth, self.expanded
        node = super().compose_node(parent, index)
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in self.anchored:
                raise self.oversized(f"alias *{event.anchor} names a node that contains it, so it never ends", event.start_mark)
            nodes, levels = self.anchored[event.anchor]
            self.expanded += nodes
            self.reached = depth - 1 + levels
            if self.reached > MAX_DEPTH:
                raise self.oversized(f"is nested past the limit of {MAX_DEPTH} levels through alias *{event.anchor}", event.start_mark)
        else:
            self.expanded += 1
            if event.anchor is not None:
                self.anchored[event.anchor] = (self.expanded - before, self.reached - depth + 1)
            if node.tag == INTEGER_TAG and len(node.value) > MAX_INTEGER_CHARS:
                raise self.oversized(f"an integer of {len(node.value):,} characters, past the limit of {MAX_INTEGER_CHARS:,}", event.start_mark)
        if self.expanded > MAX_NODES:
            raise self.oversized(f"grows the file past the limit of {MAX_NODES:,} YAML nodes, an alias counting as all its anchor holds",
                                 event.start_mark)
        self.reached = max(outer, self.reached)
        self.path.pop()
        return node

    def oversized(self, problem: str, mark) -> Oversized:
        """Oversized at the node being composed, named by its mapping keys and item indices up to
        its innermost key (`grid.seed`, not `grid.seed[0][0]`)."""
        parts: list[str] = []
        for index in self.path:
            if isinstance(index, int):
                parts.append(f"[{index}]")
            elif index is not None:  # the key node of the value being composed
                parts.append(("." if parts else "") + (str(index.value) if isinstance(index, yaml.ScalarNode) else "?"))
        while parts and parts[-1].startswith("["):
            parts.pop()
        field = "".join(parts[:FIELD_PARTS]) + ("..." if len(parts) > FIELD_PARTS else "")
        return Oversized(field or None, f"{problem} (line {mark.line + 1}, column {mark.column + 1})", mark)

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue  # `<<: *anchor` merges a mapping in; its keys may be overridden here
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise DuplicateKey(key, seen[key], key_node.start_mark.line + 1)
            except TypeError:
                continue  # an unhashable key: SafeLoader says so itself
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node):
        return self.read_scalar(super().construct_yaml_int, node, "an integer")

    def construct_yaml_float(self, node):
        return self.read_scalar(super().construct_yaml_float, node, "a number")

    @staticmethod
    def read_scalar(construct, node, what: str):
        try:
            return construct(node)
        except (ValueError, IndexError):  # `!!int abc`, `!!int ""`: PyYAML hands the text to int() or float()
            raise yaml.constructor.ConstructorError(None, None, f"cannot read {node.value!r} as {what}", node.start_mark) from None


StrictLoader.add_constructor("tag:yaml.org,2002:int", StrictLoader.construct_yaml_int)
StrictLoader.add_constructor("tag:yaml.org,2002:float", StrictLoader.construct_yaml_float)


def read_grid_text(source: Path) -> str:
    """The text of a grid file, read once and never more than MAX_GRID_CHARS characters of it
    (a file past that, /dev/zero included, is refused), or GridError."""
    try:
        with open(source) as handle:
            text = handle.read(MAX_GRID_CHARS + 1)
    except (FileNotFoundError, NotADirectoryError):
        raise GridError(source, None, "no such grid file") from None
    except IsADirectoryError:
        raise GridError(source, None, "is a directory, not a grid file") from None
    except UnicodeDecodeError:
        raise GridError(source, None, "is not a text file") from None
    except OSError as error:  # a path too long included
        raise GridError(source, None, f"cannot be read ({error.strerror})") from None
    if len(text) > MAX_GRID_CHARS:
        raise GridError(source, None, f"is larger than the limit of {MAX_GRID_CHARS:,} characters ({MAX_GRID_CHARS // 1024} KiB) for a grid file")
    return text


def parse_yaml_mapping(source: Path, text: str) -> dict:
    """The mapping that `text`, the content of grid file `source`, holds, read by StrictLoader;
    or GridError naming the file, and the field where there is one."""
    try:
        document = yaml.load(text, Loader=StrictLoader)
    except DuplicateKey as error:
        raise GridError(source, str(error.key), f"given twice (lines {error.first_line} and {error.again_line}): give it once") from None
    except Oversized as error:
        raise GridError(source, error.field, error.problem) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise GridError(source, None, f"unreadable YAML{where}: {problem}") from None
    if document is None:
        raise GridError(source, None, "is empty")
    if not isinstance(document, dict):
        raise GridError(source, None, f"must be a YAML mapping of sections (name, data, model, ...), got a {type(document).__name__}")
    return document


def read_yaml_mapping(source: Path) -> dict:
    """The mapping grid file `source` holds, or GridError (read_grid_text, parse_yaml_mapping)."""
    return parse_yaml_mapping(source, read_grid_text(source))


def resolve_data_path(base: dict, base_dir: Path) -> None:
    data = base.get("data")
    if isinstance(data, dict) and isinstance(data.get("path"), str):
        data["path"] = str((base_dir / Path(data["path"]).expanduser()).resolve())


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
    *parents, leaf = path.split(".")
    node = config
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {} if child is None else child
        if not isinstance(child, dict):
            raise KeyError(part)
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
            path = error.args[0]
            raise GridError(source, written[path], f"is not a config path ({path.split('.')[0]} is not a section)") from None
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


def describe_validation_error(
    error: ValidationError, prefix: str = "", raw: Optional[dict] = None, show_input: bool = True, schema=TrialConfig
) -> tuple[Optional[str], str]:
    """The first problem pydantic found, as (dotted field, message)."""
    first = error.errors()[0]
    loc = [str(part) for part in first["loc"]]
    if len(loc) > 1 and loc[0] in TAGGED_SECTIONS:
        loc.pop(1)  # the discriminator value pydantic inserts, e.g. data.spiral.classes
    field = ".".join(([prefix] if prefix else []) + loc) or None
    kind, message = first["type"], first["msg"]
    if kind == "extra_forbidden":
        if len(loc) == 1:
            known = list(schema.model_fields)
        else:
            known = settings_of(loc[0], (raw or {}).get(loc[0])) if len(loc) == 2 else []
        message = "unknown setting" + suggest(loc[-1], known)
    elif kind == "missing":
        message = "is required"
    elif kind == "union_tag_not_found":
        field, message = f"{field}.name", "is required: it chooses the kind"
    elif kind == "union_tag_invalid":
        context = first.get("ctx", {})
        field, message = f"{field}.name", f"unknown kind {context.get('tag')!r} (expected one of {context.get('expected_tags')})"
    elif kind in ("not_a_boolean", "not_finite"):  # trainers.config.Section's own checks, by setting
        setting = first["ctx"]["name"]
        field = ".".join(filter(None, [field, setting]))
        message = message.removeprefix(f"{setting}: ")
    elif kind.startswith("value_error"):
        message = message.removeprefix("Value error, ")
    elif show_input and "input" in first and not isinstance(first["input"], dict):
        message = f"{message}, got {first['input']!r}"
    return field, message


def settings_of(section: str, raw_section) -> list[str]:
    """The setting names a config section accepts (for its kind, where it has kinds)."""
    field = TrialConfig.model_fields.get(section)
    if field is None:
        return []
    members = typing.get_args(field.annotation) or (field.annotation,)
    kind = raw_section.get("name") if isinstance(raw_section, dict) else None
    for member in members:
        tags = typing.get_args(member.model_fields["name"].annotation) if "name" in member.model_fields else ()
        if len(members) == 1 or kind in tags:
            return list(member.model_fields)
    return []


def suggest(word: str, choices) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def check_datasets(source: Path, datasets) -> None:
    """Refuse missing data directories and batches larger than the training set before running.
    datasets: the distinct (data config, batch size) pairs of the sweep's points."""
    for data, batch_size in datasets:
        try:
            check_data(data, batch_size)
        except DatasetError as error:
            raise GridError(source, error.field, error.message) from None
