"""The repository's packages (``libs/*/pyproject.toml``, ``services/*/pyproject.toml``) and what the
installed environment records about them: declared requirements, their transitive closure, the modules
each installed distribution provides, and the imports of each package's source."""

from __future__ import annotations

import ast
import functools
import sys
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePath
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
ModulePath = tuple[str, ...]
EXTENSION_SUFFIXES = (".so", ".pyd")


@dataclass(frozen=True)
class Project:
    """One package of the repository: its distribution name, folder and ``[project]`` table."""

    name: NormalizedName
    directory: Path
    table: dict[str, Any]

    @property
    def dependencies(self) -> set[Requirement]:
        return {Requirement(text) for text in self.table.get("dependencies", [])}

    @property
    def packages(self) -> list[Path]:
        """Its top-level import packages (folders with an ``__init__.py``)."""
        return sorted(path for path in self.directory.iterdir() if (path / "__init__.py").is_file())

    @property
    def modules(self) -> frozenset[ModulePath]:
        return frozenset(
            module
            for package in self.packages
            for file in package.rglob("*.py")
            if (module := module_path(file.relative_to(self.directory))) is not None
        )


@functools.cache
def projects() -> dict[NormalizedName, Project]:
    found = {}
    for pyproject in sorted([*ROOT.glob("libs/*/pyproject.toml"), *ROOT.glob("services/*/pyproject.toml")]):
        table = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        name = canonicalize_name(table["name"])
        found[name] = Project(name, pyproject.parent, table)
    return found


def module_path(file: PurePath) -> ModulePath | None:
    """``a/b/__init__.py`` -> (a, b); ``a/b.py`` -> (a, b); ``a/_c.cpython-311-x86_64-linux-gnu.so`` ->
    (a, _c); None for anything that is not an importable module (data, metadata, scripts, caches)."""
    parts = file.parts
    if not parts or parts[0] == ".." or any(part == "__pycache__" or "." in part for part in parts[:-1]):
        return None
    name = parts[-1]
    if name == "__init__.py":
        return parts[:-1] or None
    if name.endswith(".py"):
        return (*parts[:-1], name[: -len(".py")])
    if name.endswith(EXTENSION_SUFFIXES):
        return (*parts[:-1], name.split(".", 1)[0])
    return None


def requirements(name: str, extras: Iterable[str] = ()) -> set[Requirement]:
    """What the installed distribution ``name`` requires (with ``extras``), its markers evaluated here."""
    wanted = {"", *extras}
    found = set()
    for text in metadata.requires(name) or []:
        requirement = Requirement(text)
        if requirement.marker is None or any(requirement.marker.evaluate({"extra": e}) for e in wanted):
            found.add(requirement)
    return found


def closure(name: str) -> set[NormalizedName]:
    """``name`` and every installed distribution it needs, transitively. Raises PackageNotFoundError
    when one of them is not installed."""
    done: set[tuple[NormalizedName, frozenset[str]]] = set()
    pending: list[tuple[NormalizedName, frozenset[str]]] = [(canonicalize_name(name), frozenset())]
    while pending:
        current = pending.pop()
        if current in done:
            continue
        done.add(current)
        pending.extend((canonicalize_name(r.name), frozenset(r.extras)) for r in requirements(*current))
    return {key for key, _ in done}


@functools.cache
def provided_modules(name: NormalizedName) -> frozenset[ModulePath]:
    """The modules the installed distribution ``name`` provides: from its RECORD, or for one of our own
    packages (installed editable, so RECORD lists only the path hook) from its source folder."""
    if name in projects():
        return projects()[name].modules
    files = metadata.distribution(name).files or []
    return frozenset(module for file in files if (module := module_path(PurePath(file))) is not None)


def provides(name: NormalizedName, module: ModulePath) -> bool:
    """Whether importing ``module`` resolves into distribution ``name``: one of its modules is ``module``
    or a package above it, or ``module`` is a (namespace) package above one of its modules."""
    provided = provided_modules(name)
    if any(module[:length] in provided for length in range(1, len(module) + 1)):
        return True
    return any(own[: len(module)] == module for own in provided)


@dataclass(frozen=True)
class Import:
    module: ModulePath
    where: str  # path:line

    def __str__(self) -> str:
        return f"{'.'.join(self.module)} ({self.where})"


def imports(project: Project) -> Iterator[Import]:
    """Absolute imports of modules outside the standard library and the project itself, in its source
    (type-checking and function-local imports too: they run in some configuration)."""
    own = {package.name for package in project.packages}
    for package in project.packages:
        for file in sorted(package.rglob("*.py")):
            tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".", 1)[0]
                    if top not in sys.stdlib_module_names and top not in own:
                        yield Import(tuple(name.split(".")), f"{file.relative_to(ROOT)}:{node.lineno}")
