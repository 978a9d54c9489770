"""Grid files read as YAML: strictly (a key given twice is refused) and within limits, so that no
file makes tiltsweep hang, exhaust memory or end in a traceback: at most MAX_GRID_CHARS characters
(read no further), at most MAX_NODES YAML nodes and MAX_DEPTH levels deep with every alias counted
as all that its anchor holds (PyYAML shares what an alias names, so a "billion laughs" file is
small until something walks, copies or prints it), and integer literals of at most
MAX_INTEGER_CHARS characters. StrictLoader counts while it composes the document, and refuses the
moment a limit is passed, before any Python object is built. Every refusal is a GridError: one
line naming the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import yaml

from tiltsweep.sweep.errors import Refused


class GridError(Refused, ValueError):
    """A grid file that cannot run. str() is one line: `file: field: what is wrong`."""

    def __init__(self, source, field: Optional[str], message: str):
        self.source, self.field, self.message = str(source), field, message
        super().__init__(f"{self.source}: {field}: {message}" if field else f"{self.source}: {message}")


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
        self.mapping_fields: dict[int, str] = {}  # id of a mapping node -> its field (`grid`), for DuplicateKey
        # id of a mapping node -> its pairs as written: merging (`<<: *m`) rewrites the pairs of
        # the mapping merged in, which then hold its overridden keys twice
        self.written_pairs: dict[int, list] = {}

    def compose_node(self, parent, index):
        event = self.peek_event()
        self.path.append(index)
        depth = len(self.path)
        if depth > MAX_DEPTH:
            raise self.oversized(f"is nested past the limit of {MAX_DEPTH} levels", event.start_mark)
        outer, self.reached, before = self.reached, depth, self.expanded
        node = super().compose_node(parent, index)
        if isinstance(node, yaml.MappingNode) and not isinstance(event, yaml.AliasEvent):
            self.mapping_fields[id(node)] = self.field(to_innermost_key=False)
            self.written_pairs[id(node)] = list(node.value)
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
        """Oversized at the node being composed, named by `field`."""
        return Oversized(self.field() or None, f"{problem} (line {mark.line + 1}, column {mark.column + 1})", mark)

    def field(self, to_innermost_key: bool = True) -> str:
        """The node being composed, named by its mapping keys and item indices up to its innermost
        key (`grid.seed`, not `grid.seed[0][0]`), or to itself (`subgrids[0]`); "" for the document."""
        parts: list[str] = []
        for index in self.path:
            if isinstance(index, int):
                parts.append(f"[{index}]")
            elif index is not None:  # the key node of the value being composed
                parts.append(("." if parts else "") + (str(index.value) if isinstance(index, yaml.ScalarNode) else "?"))
        while to_innermost_key and parts and parts[-1].startswith("["):
            parts.pop()
        return "".join(parts[:FIELD_PARTS]) + ("..." if len(parts) > FIELD_PARTS else "")

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in self.written_pairs.get(id(node), node.value):
            if key_node.tag == MERGE_TAG:
                continue  # `<<: *anchor` merges a mapping in; its keys may be overridden here
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    within = self.mapping_fields.get(id(node), "")
                    raise DuplicateKey(f"{within}.{key}" if within else key, seen[key], key_node.start_mark.line + 1)
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
