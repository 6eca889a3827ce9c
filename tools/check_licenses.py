"""Fails, naming each package, when an installed package's licence is not on the allow-list.

The licences come from pip-licenses (``--from=mixed``: the trove classifiers, else the License-Expression
or License field); the allow-list, the aliases for non-SPDX strings and the per-package verdicts are in
tools/licenses.toml. Our own packages (briefxai*) are skipped. Usage: ``python tools/check_licenses.py``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ALLOW_LIST = Path(__file__).with_name("licenses.toml")
OWN_PREFIX = "briefxai"
TOKEN = re.compile(r"\(|\)|[A-Za-z0-9.+-]+")


@dataclass(frozen=True)
class Policy:
    allowed: frozenset[str]
    aliases: dict[str, str]
    packages: dict[str, dict[str, str]]

    @classmethod
    def load(cls, path: Path) -> Policy:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
        return cls(
            allowed=frozenset(name.lower() for name in document["allowed"]),
            aliases=document.get("aliases", {}),
            packages={normalise(name): entry for name, entry in document.get("packages", {}).items()},
        )


class UnreadableLicence(ValueError):
    """The string is neither an SPDX expression nor a known alias."""


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def expression_allowed(expression: str, allowed: frozenset[str]) -> bool:
    """Evaluates an SPDX expression (AND, OR, WITH, parentheses) against the allowed identifiers."""
    tokens = TOKEN.findall(expression)
    if "".join(tokens) != re.sub(r"\s+", "", expression) or not tokens:
        raise UnreadableLicence(expression)
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        if position >= len(tokens):
            raise UnreadableLicence(expression)
        position += 1
        return tokens[position - 1]

    def any_of() -> bool:
        result = all_of()
        while peek() == "OR":
            take()
            result = all_of() or result
        return result

    def all_of() -> bool:
        result = term()
        while peek() == "AND":
            take()
            result = term() and result
        return result

    def term() -> bool:
        word = take()
        if word == "(":
            result = any_of()
            if take() != ")":
                raise UnreadableLicence(expression)
            return result
        if word in ("AND", "OR", "WITH", ")"):
            raise UnreadableLicence(expression)
        if peek() == "WITH":  # an exception only adds permissions to the licence
            take()
            take()
        return word.lower() in allowed

    result = any_of()
    if position != len(tokens):
        raise UnreadableLicence(expression)
    return result


def licence_allowed(reported: str, policy: Policy) -> bool:
    """pip-licenses joins several classifiers with "; ": each of them must be allowed."""
    return all(
        expression_allowed(policy.aliases.get(part.strip(), part.strip()), policy.allowed)
        for part in reported.split(";")
    )


def problems(installed: list[dict[str, str]], policy: Policy) -> list[str]:
    found = []
    for package in installed:
        name, version, reported = package["Name"], package["Version"], package["License"].strip()
        if normalise(name).startswith(OWN_PREFIX):
            continue
        verdict = policy.packages.get(normalise(name))
        label = f"{name} {version}: {reported!r}"
        if verdict is not None:
            if verdict["reported"] != reported:
                found.append(
                    f"{label} no longer matches its entry ({verdict['reported']!r}): verify it again"
                )
                continue
            reported = verdict["licence"]
        try:
            allowed = licence_allowed(reported, policy)
        except UnreadableLicence:
            allowed = False
        if not allowed:
            found.append(f"{label} is not on the allow-list (if that string is wrong: a [packages] entry)")
    return found


def installed_licences() -> list[dict[str, str]]:
    completed = subprocess.run(
        [sys.executable, "-m", "piplicenses", "--format=json", "--from=mixed", "--with-system"],
        capture_output=True,
        text=True,
        check=True,
    )
    packages: list[dict[str, str]] = json.loads(completed.stdout)
    return packages


def main() -> int:
    installed = installed_licences()
    found = problems(installed, Policy.load(ALLOW_LIST))
    checked = sum(not normalise(package["Name"]).startswith(OWN_PREFIX) for package in installed)
    if found:
        print(
            f"licences: {len(found)} of {checked} packages not allowed by {ALLOW_LIST.name}:", file=sys.stderr
        )
        for line in found:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"licences: all {checked} installed packages allowed by tools/{ALLOW_LIST.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
