"""pip-audit over the installed environment: fails on a known vulnerability, skips when it cannot ask.

pip-audit's default service asks PyPI's JSON API about each installed distribution (our editable packages
excepted). Where that service cannot be reached, pip-audit either fails to connect or reports every
package as "not found"; neither is a result, so this prints ``pip-audit skipped: <why>`` and exits 0.
Usage: ``python tools/audit_dependencies.py [--service pypi|osv]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Vulnerability ids accepted after review, each with why (no fixed version yet, or the vulnerable code
# is not used here): {"GHSA-xxxx-xxxx-xxxx": "why"}. Passed to pip-audit as --ignore-vuln.
ACCEPTED: dict[str, str] = {}

NOT_FOUND = "Dependency not found on PyPI"
EDITABLE = "distribution marked as editable"


@dataclass(frozen=True)
class Outcome:
    code: int
    message: str


def judge(report: dict[str, Any], service: str = "pypi") -> Outcome:
    """Turns pip-audit's JSON report into an exit code and a message."""
    dependencies = [d for d in report["dependencies"] if d.get("skip_reason") != EDITABLE]
    unknown = sorted(d["name"] for d in dependencies if d.get("skip_reason", "").startswith(NOT_FOUND))
    audited = [d for d in dependencies if "skip_reason" not in d]
    if dependencies and not audited:
        return Outcome(
            0,
            f"pip-audit skipped: the {service} service answered 'not found' for all {len(dependencies)} "
            "installed packages: its vulnerability data is not reachable from here",
        )
    findings = [
        f"  {d['name']} {d['version']}: {v['id']} (fixed in: {', '.join(v['fix_versions']) or 'no release yet'})"
        for d in audited
        for v in d["vulns"]
    ]
    not_audited = f"; not on PyPI, so not audited: {', '.join(unknown)}" if unknown else ""
    if findings:
        return Outcome(
            1, "\n".join([f"pip-audit: {len(findings)} known vulnerabilities{not_audited}", *findings])
        )
    return Outcome(0, f"pip-audit: {len(audited)} packages audited, no known vulnerabilities{not_audited}")


def run(service: str) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="briefxai-audit-") as directory:
        output = Path(directory) / "audit.json"
        command = [
            sys.executable, "-m", "pip_audit", "--local", "--skip-editable", "--progress-spinner", "off",
            "--vulnerability-service", service, "--format", "json", "--output", str(output),
            *(argument for vuln in ACCEPTED for argument in ("--ignore-vuln", vuln)),
        ]  # fmt: skip
        completed = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603  fixed arguments, no shell
        if not output.exists():
            lines = completed.stderr.strip().splitlines() or [f"exit code {completed.returncode}"]
            return Outcome(0, f"pip-audit skipped: the {service} service could not be queried: {lines[-1]}")
        return judge(json.loads(output.read_text(encoding="utf-8")), service)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", default="pypi", choices=["pypi", "osv"])
    outcome = run(parser.parse_args().service)
    print(outcome.message, file=sys.stderr if outcome.code else sys.stdout)
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())
