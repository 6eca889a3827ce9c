"""``promtool check metrics`` on a service's /metrics text (Debian's ``prometheus`` package; CI installs it)."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def check_metrics(text: str) -> None:
    """Fails the test with promtool's complaints when ``text`` does not pass ``promtool check metrics``,
    and clearly when promtool is not installed. Blocking: call it through ``asyncio.to_thread``."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed (Debian/Ubuntu: apt-get install prometheus; CI installs it)")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60, check=False
    )
    assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()
