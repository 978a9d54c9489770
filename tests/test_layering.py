"""The house's shape, read from the installed package's source: folders import one another one way
only, in the order of their roles; only the store names what is inside a results directory; one
module imports Ray and one matplotlib; every module says what it is for."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

from tiltsweep.sweep.store import layout

PACKAGES = ("tiltsweep.trainers", "tiltsweep.sweep", "tiltsweep.analysis")
# What each folder may import (DESIGN.md's roles): the store below the grid, the run and analysis;
# analysis reads the store, never a grid file; the commands on top, imported by none.
ALLOWED = {
    "trainers/compilation": set(),
    "trainers": {"trainers/compilation"},
    "sweep": set(),  # errors.py: the refusals every role raises
    "sweep/store": {"sweep"},
    "sweep/grid": {"sweep", "sweep/store", "trainers"},
    "analysis": {"sweep/store", "trainers"},
    "sweep/run": {"sweep", "sweep/store", "sweep/grid", "trainers", "trainers/compilation"},
    "sweep/commands": {"sweep", "sweep/store", "sweep/grid", "sweep/run", "analysis", "trainers", "trainers/compilation"},
}


def modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> its file."""
    found = {}
    for name in PACKAGES:
        package = importlib.import_module(name)
        found[name] = Path(package.__file__)
        for info in pkgutil.walk_packages(package.__path__, name + "."):
            found[info.name] = Path(importlib.util.find_spec(info.name).origin)
    return found


MODULES = modules()
ROOTS = {name: Path(importlib.import_module(name).__file__).parent for name in PACKAGES}


def folder_of(path: Path) -> str:
    """A module's folder, as ORDER names it: `sweep/store` for tiltsweep.sweep.store.lock."""
    for name, root in ROOTS.items():
        if path.is_relative_to(root):
            return "/".join([name.split(".")[-1], *path.parent.relative_to(root).parts])
    raise AssertionError(path)


def imported(tree: ast.Module, module: str, is_package: bool) -> set[str]:
    """The tiltsweep modules a module imports, at its top or inside functions (lazily)."""
    package = module if is_package else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([node.module] if node.module else []))
            names.update(f"{base}.{alias.name}" for alias in node.names)
            names.add(base)
    found = set()
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name:
            found.add(name)
    return found


def folder_imports() -> dict[tuple[str, str], list[str]]:
    """(importing folder, imported folder) -> the modules that import across, for every pair of folders."""
    edges: dict[tuple[str, str], list[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for target in imported(tree, module, path.name == "__init__.py"):
            here, there = folder_of(path), folder_of(MODULES[target])
            if here != there:
                edges.setdefault((here, there), []).append(module)
    return edges


def loops(edges) -> list[list[str]]:
    """The folders that reach themselves through their imports (each loop once, as a cycle)."""
    graph: dict[str, set] = {}
    for here, there in edges:
        graph.setdefault(here, set()).add(there)
    found = []
    for start in sorted(graph):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph.get(node, ())):
                if nxt == start and min(path) == start:
                    found.append(path)
                elif nxt not in path:
                    stack.append((nxt, path + [nxt]))
    return found


def test_the_folders_are_those_of_the_roles():
    assert {folder_of(path) for path in MODULES.values()} == set(ALLOWED)


def test_no_two_folders_import_each_other():
    assert not loops(folder_imports()), loops(folder_imports())
    allowed = [(here, there) for here, theirs in ALLOWED.items() for there in theirs]
    assert not loops(allowed), loops(allowed)  # nor may the roles' table allow a loop


def test_each_folder_imports_only_what_its_role_may():
    against = {f"{here} imports {there} ({', '.join(sorted(set(who)))})"
               for (here, there), who in folder_imports().items() if there not in ALLOWED[here]}
    assert not against, "\n".join(sorted(against))


def strings(tree: ast.Module):
    """Every string constant of a module but its docstrings (which describe, not use, paths)."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node


# Layout names that are also words with another meaning here: pandas' `to_dict("records")` and the
# command `lr-range`. A path through them has a "/" and is still caught.
OTHER_MEANINGS = {"records", "lr-range"}


def results_names() -> set[str]:
    """The files and folders store.layout names (its constants)."""
    values = [value for name, value in vars(layout).items() if name.isupper() and isinstance(value, str)]
    return {part for value in values for part in value.split("/") if part}


def names_a_results_path(text: str, names: set[str]) -> bool:
    """Whether a string is, or is a path through, a file or folder of the results directory
    (sentences of messages and help that mention one are not paths)."""
    if "/" in text and not any(c.isspace() for c in text):
        return bool(set(text.split("/")) & names)
    return text in names - OTHER_MEANINGS


def joined(tree: ast.Module):
    """The strings a module joins to a path with `/` (`root / "records"`)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and isinstance(side.value, str):
                    yield side


def test_only_the_store_names_a_file_or_folder_of_the_results_directory():
    names = results_names()
    assert {"summary.parquet", "records", "checkpoints", "figures", "sweep.json", ".lock"} <= names
    found = []
    for module, path in MODULES.items():
        if folder_of(path) == "sweep/store":
            continue
        tree = ast.parse(path.read_text())
        found += [f"{module}:{node.lineno}: {node.value!r}" for node in strings(tree) if names_a_results_path(node.value, names)]
        found += [f"{module}:{node.lineno}: / {node.value!r}" for node in joined(tree) if node.value in names]
        found += [f"{module}: imports the store's layout" for target in imported(tree, module, path.name == "__init__.py")
                  if target == layout.__name__]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("library,home", [("ray", "tiltsweep.sweep.run.executor"), ("matplotlib", "tiltsweep.analysis.figures"),
                                          ("seaborn", "tiltsweep.analysis.figures")])
def test_one_module_imports_each_heavy_library(library, home):
    importers = set()
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(name == library or name.startswith(library + ".") for name in names):
                importers.add(module)
    assert importers == {home}


def test_every_module_opens_with_a_docstring_of_its_job():
    missing = [module for module, path in MODULES.items() if not (ast.get_docstring(ast.parse(path.read_text())) or "").strip()]
    assert not missing


def test_the_checks_catch_what_they_look_for():
    names = results_names()
    assert names_a_results_path("figures", names) and names_a_results_path("lr-range/range.parquet", names)
    assert names_a_results_path("records/", names) and not names_a_results_path("records", names)
    assert names_a_results_path("/summary.parquet", names)  # an f-string's part: f"{root}/summary.parquet"
    assert not names_a_results_path("Results go to OUT/<name>/ (summary.parquet, figures/)", names)
    backwards = ast.parse("from tiltsweep.sweep.commands.cli import main")
    assert imported(backwards, "tiltsweep.sweep.store.lock", False) == {"tiltsweep.sweep.commands.cli"}
    assert [node.value for node in joined(ast.parse('root / "records" / name'))] == ["records"]
    assert loops([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]) == [["a", "b", "c"]]
