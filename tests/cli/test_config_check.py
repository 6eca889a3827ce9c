"""``briefxai config check``: every service validates its own section, as it would at start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "briefxai.example.yaml"


def check(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BRIEFXAI_")}
    return subprocess.run(
        [sys.executable, "-m", "briefxai_cli", "config", "check", str(path)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_the_example_is_valid_and_the_effective_settings_show_overrides_with_secrets_masked() -> None:
    result = check(
        EXAMPLE, BRIEFXAI_GATEWAY_STORE_URL="postgresql://briefxai:hunter2-secret@db:5432/briefxai"
    )
    assert result.returncode == 0, result.stderr
    effective = yaml.safe_load(result.stdout)
    assert set(effective) == {"gateway", "facets", "embedding", "clustering"}
    assert effective["gateway"]["store_url"] == "postgresql://[REDACTED]@db:5432/briefxai"
    assert "hunter2" not in result.stdout + result.stderr
    example = yaml.safe_load(EXAMPLE.read_text())
    assert effective["embedding"]["grpc_port"] == example["embedding"].get("grpc_port", 50052)
    assert "valid for gateway, facets, embedding, clustering" in result.stderr


def test_an_invalid_file_names_every_bad_field_and_unknown_section(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "gateway": {"grpc_port": 70000},
                "gatway": {"grpc_port": 1},
                "facets": {"llm_api_key_secret": "sk-abcdefghijklmnop1234"},
            }
        )
    )
    result = check(config)
    assert result.returncode == 1
    assert "gateway.grpc_port" in result.stderr
    assert "facets.llm_api_key_secret" in result.stderr
    assert "unknown section 'gatway'" in result.stderr
    assert "sk-abcdefghijklmnop1234" not in result.stderr
    assert "embedding:" in result.stdout and "clustering:" in result.stdout
