"""``services/<name>/Dockerfile``: hadolint-clean, and consistent with the packages and settings they ship.

Docker cannot run here; what can be checked without it is: the lint, that each image installs exactly
its service's own packages (its ``briefxai-*`` closure), that the ports, entry point and health check
match the service's settings, and that every ``BRIEFXAI_<NAME>_*`` variable set names a real setting.
"""

from __future__ import annotations

import importlib
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from briefxai_common.config import ServiceSettings
from tests.packaging.distributions import ROOT, closure, projects

SERVICES = ("gateway", "facets", "embedding", "clustering")
BASE_IMAGE = re.compile(r"^python:3\.11\.\d+-slim-bookworm$")
UID = "10001"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    stage: int  # index of the FROM it belongs to


def instructions(dockerfile: Path) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    found: list[Instruction] = []
    stage = -1
    pending = ""
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        stage += keyword.upper() == "FROM"
        found.append(Instruction(keyword.upper(), " ".join(arguments.split()), stage))
        pending = ""
    return found


def dockerfile(service: str) -> Path:
    return ROOT / "services" / service / "Dockerfile"


def settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"briefxai_{service}.settings")
    (found,) = {
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, ServiceSettings) and value.section == service
    }
    return found


def environment(found: list[Instruction], stage: int) -> dict[str, str]:
    values = {}
    for instruction in found:
        if instruction.keyword == "ENV" and instruction.stage == stage:
            for pair in shlex.split(instruction.arguments):
                key, _, value = pair.partition("=")
                values[key] = value
    return values


def test_hadolint_is_clean() -> None:
    """Each ignored rule is justified where it is ignored, in the Dockerfile."""
    hadolint = Path(sys.executable).parent / "hadolint"
    files = [str(dockerfile(service)) for service in SERVICES]
    result = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "style", *files],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_hadolint_does_fail_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install grpcio\nCMD python -m x\n", encoding="utf-8")
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--no-color", str(bad)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1 and "DL3006" in result.stdout and "DL3025" in result.stdout


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_installs_exactly_its_own_packages(service: str) -> None:
    found = instructions(dockerfile(service))
    ours = closure(f"briefxai-{service}") & set(projects())
    folders = {projects()[name].directory.relative_to(ROOT).as_posix() for name in ours}
    copied = {
        source
        for instruction in found
        if instruction.keyword == "COPY" and instruction.stage == 0
        for source in shlex.split(instruction.arguments)[:-1]
    }
    assert copied == folders
    installs = [
        word.removeprefix("./").partition("[")[0].rstrip("/")  # ./services/gateway[postgresql]: an extra
        for instruction in found
        if instruction.keyword == "RUN" and instruction.stage == 0
        for word in shlex.split(instruction.arguments)
        if word.startswith("./")
    ]
    assert sorted(installs) == sorted(folders)
    assert canonicalize_name(f"briefxai-{service}") in ours


@pytest.mark.parametrize("service", SERVICES)
def test_two_stages_on_one_pinned_base_image(service: str) -> None:
    froms = [i.arguments.split() for i in instructions(dockerfile(service)) if i.keyword == "FROM"]
    assert len(froms) == 2 and froms[0][1:] == ["AS", "builder"] and len(froms[1]) == 1
    images = {words[0] for words in froms}
    assert len(images) == 1 and BASE_IMAGE.match(images.pop())


@pytest.mark.parametrize("service", SERVICES)
def test_runtime_matches_the_settings(service: str) -> None:
    found = [i for i in instructions(dockerfile(service)) if i.stage == 1]
    fields = settings_class(service).model_fields
    grpc_port, http_port = fields["grpc_port"].default, fields["http_port"].default
    by_keyword = {i.keyword: i.arguments for i in found if i.keyword in {"ENTRYPOINT", "EXPOSE", "USER"}}
    assert by_keyword == {
        "ENTRYPOINT": f'["python", "-m", "briefxai_{service}"]',
        "EXPOSE": f"{grpc_port} {http_port}",
        "USER": f"{UID}:{UID}",
    }
    (healthcheck,) = [i.arguments for i in found if i.keyword == "HEALTHCHECK"]
    variable = f"BRIEFXAI_{service.upper()}_GRPC_PORT"
    assert healthcheck.endswith(
        f'CMD python -m briefxai_common.healthcheck --port "${{{variable}:-{grpc_port}}}" --section {service}'
    )
    assert any(i.keyword == "RUN" and f"--uid {UID} --gid {UID}" in i.arguments for i in found)


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_variable_names_a_setting(service: str) -> None:
    found = instructions(dockerfile(service))
    prefix = f"BRIEFXAI_{service.upper()}_"
    fields = settings_class(service).model_fields
    variables = {key for key in environment(found, 1) if key.startswith(prefix)}
    assert {key.removeprefix(prefix).lower() for key in variables} <= set(fields)
    env = environment(found, 1)
    assert env["HOME"] == "/tmp" and env["PYTHONDONTWRITEBYTECODE"] == "1"  # noqa: S108  checks the image's env


def test_the_embedding_image_serves_the_export_it_built() -> None:
    """The export made at build time is the directory and precision the service is told to load, offline."""
    found = instructions(dockerfile("embedding"))
    (export,) = [
        i.arguments for i in found if i.keyword == "RUN" and "briefxai_embedding.onnx_export" in i.arguments
    ]
    words = shlex.split(export)
    arguments = {words[n]: words[n + 1] for n in range(len(words) - 1) if words[n].startswith("--")}
    env = environment(found, 1)
    assert env["BRIEFXAI_EMBEDDING_ONNX_MODEL_DIR"] == arguments["--out"]
    assert env["BRIEFXAI_EMBEDDING_ONNX_PRECISION"] == arguments["--precision"] == "${ONNX_PRECISION}"
    precisions = {
        i.stage: i.arguments for i in found if i.keyword == "ARG" and i.arguments.startswith("ONNX_")
    }
    assert precisions == {0: "ONNX_PRECISION=int8-static", 1: "ONNX_PRECISION=int8-static"}
    assert env["HF_HUB_OFFLINE"] == "1" and "HF_HUB_OFFLINE=1" in words
