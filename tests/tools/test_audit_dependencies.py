"""How tools/audit_dependencies.py reads pip-audit's JSON report."""

from typing import Any

from tools.audit_dependencies import judge

EDITABLE: dict[str, Any] = {"name": "briefxai-gateway", "skip_reason": "distribution marked as editable"}


def audited(name: str, *vulns: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "version": "1.0", "vulns": list(vulns)}


def not_found(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "skip_reason": f"Dependency not found on PyPI and could not be audited: {name} (1.0)",
    }


def test_a_vulnerability_fails_naming_the_package_and_the_fix() -> None:
    vuln = {"id": "GHSA-aaaa-bbbb-cccc", "fix_versions": ["1.1"], "aliases": [], "description": ""}
    outcome = judge(
        {"dependencies": [EDITABLE, audited("requests"), audited("urllib3", vuln), not_found("torch")]}
    )
    assert outcome.code == 1
    assert "urllib3 1.0: GHSA-aaaa-bbbb-cccc (fixed in: 1.1)" in outcome.message
    assert "not audited: torch" in outcome.message


def test_no_vulnerability_passes_and_says_how_many_were_audited() -> None:
    outcome = judge({"dependencies": [EDITABLE, audited("requests"), audited("urllib3")]})
    assert outcome.code == 0
    assert outcome.message == "pip-audit: 2 packages audited, no known vulnerabilities"


def test_a_service_that_knows_no_package_is_a_skip_not_a_pass() -> None:
    outcome = judge({"dependencies": [EDITABLE, not_found("requests"), not_found("urllib3")]})
    assert outcome.code == 0
    assert outcome.message.startswith("pip-audit skipped: the pypi service answered 'not found' for all 2")
