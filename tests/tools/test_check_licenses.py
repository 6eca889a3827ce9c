"""The licence gate (tools/check_licenses.py) against its real allow-list and the installed environment."""

import subprocess
import sys
from pathlib import Path

import pytest

from tools.check_licenses import ALLOW_LIST, Policy, problems

REPO = Path(__file__).resolve().parents[2]
POLICY = Policy.load(ALLOW_LIST)


def package(name: str, licence: str) -> dict[str, str]:
    return {"Name": name, "Version": "1.0", "License": licence}


@pytest.mark.parametrize(
    "licence",
    [
        "MIT",
        "MIT License",
        "BSD License",
        "Apache-2.0 AND Apache-2.0 WITH LLVM-exception AND BSD-2-Clause",
        "MIT OR GPL-3.0-only",
        "(GPL-2.0-only OR Apache-2.0) AND MIT",
        "Apache Software License; MIT License",
        "LGPL-3.0-only",
    ],
)
def test_allowed(licence: str) -> None:
    assert problems([package("example", licence)], POLICY) == []


@pytest.mark.parametrize(
    "licence",
    [
        "GPL-3.0-only",
        "AGPL-3.0-or-later",
        "MIT AND GPL-2.0-or-later",
        "UNKNOWN",
        "",
        "Copyright (c) somebody, all rights reserved",
        "BSD",
        "MIT; GNU General Public License v3 (GPLv3)",
        "MIT OR",
    ],
)
def test_refused_names_the_package(licence: str) -> None:
    [problem] = problems([package("example", licence)], POLICY)
    assert problem.startswith("example 1.0:")


def test_a_package_entry_holds_only_for_the_string_it_was_verified_against() -> None:
    assert problems([package("umap-learn", "BSD")], POLICY) == []
    [problem] = problems([package("umap_learn", "GPL")], POLICY)
    assert "verify it again" in problem


def test_our_own_packages_are_not_checked() -> None:
    assert problems([package("briefxai-gateway", "UNKNOWN")], POLICY) == []


def test_the_installed_environment_passes() -> None:
    completed = subprocess.run(
        [sys.executable, "tools/check_licenses.py"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert "installed packages allowed" in completed.stdout
