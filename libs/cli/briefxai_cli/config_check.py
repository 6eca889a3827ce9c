"""``briefxai config check FILE``: validates a config file as the four services would load it.

Each service validates its own section: the CLI runs ``python -m briefxai_<service> --config FILE
--print-config`` for each (the CLI never imports a service, see .importlinter), so the environment's
overrides apply exactly as they would at start, and prints the effective settings with secrets masked.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import click
import yaml

from briefxai_common.config import CIRCUIT_BREAKERS, FEATURES, MONITORING, RETRY_POLICIES

SERVICES = ("gateway", "facets", "embedding", "clustering")
KNOWN_SECTIONS = frozenset({MONITORING, FEATURES, RETRY_POLICIES, CIRCUIT_BREAKERS, *SERVICES})


@dataclass(frozen=True)
class SectionCheck:
    service: str
    effective: str
    error: str

    @property
    def ok(self) -> bool:
        return not self.error


def unknown_sections(path: Path) -> list[str]:
    """Top-level keys no service reads (a misspelt section would otherwise be ignored silently)."""
    document = yaml.safe_load(path.read_text()) or {}
    if not isinstance(document, dict):
        return []
    return sorted(str(key) for key in document if key not in KNOWN_SECTIONS)


def check_service(service: str, path: Path, python: str = sys.executable) -> SectionCheck:
    result = subprocess.run(  # noqa: S603  our interpreter and module, no shell
        [python, "-m", f"briefxai_{service}", "--config", str(path), "--print-config"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode == 0:
        return SectionCheck(service, result.stdout, "")
    error = (
        result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit code {result.returncode}"
    )
    return SectionCheck(service, "", error)


def check_file(path: Path) -> list[SectionCheck]:
    with ThreadPoolExecutor(max_workers=len(SERVICES)) as pool:
        return list(pool.map(lambda service: check_service(service, path), SERVICES))


@click.group(name="config")
def config_group() -> None:
    """Configuration files."""


@config_group.command(name="check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def check_command(file: Path) -> None:
    """Validate FILE as every service would load it (environment overrides applied) and print the
    effective settings, secrets masked. Exit 1 when any section is invalid."""
    try:
        unknown = unknown_sections(file)
    except yaml.YAMLError as exc:
        raise click.ClickException(f"{file}: not YAML: {exc}") from exc
    checks = check_file(file)
    for check in checks:
        if check.ok:
            click.echo(check.effective, nl=False)
    failed = [check for check in checks if not check.ok]
    for check in failed:
        click.echo(f"{check.service}: {check.error}", err=True)
    for key in unknown:
        click.echo(f"{file}: unknown section '{key}' (known: {', '.join(sorted(KNOWN_SECTIONS))})", err=True)
    if failed or unknown:
        sys.exit(1)
    click.echo(f"{file}: valid for {', '.join(SERVICES)}", err=True)
