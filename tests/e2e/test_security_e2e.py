"""Security over real processes: the four services started by the CLI's supervisor (auth on, the admin
key in the data dir, the service token between gateway and workers) and the real ``briefxai`` command.

Each rule: no credentials, a bad key, a role without the right, another tenant's analysis, an expired
and a revoked key, erasing a user, a tampered audit row, and (last: it locks 127.0.0.1 out) a lockout.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path

import grpc
import pytest

import briefxai_sampledata as sampledata
from briefxai.gateway.v1 import gateway_pb2
from briefxai_cli.client import GatewayClient
from briefxai_cli.supervisor import Suite
from tests.e2e.support import rows_mentioning, run_cli

pytestmark = pytest.mark.e2e
KEY_LINE = re.compile(r"^bxk_[0-9a-f]{12}_[A-Za-z0-9_\-]{43}$")


def cli(suite: Suite, *args: str, key: str | None = None) -> tuple[int, str, str]:
    """``briefxai <args> --gateway <suite>``: with ``key`` as --api-key, else the suite's admin key."""
    extra = ["--api-key", key] if key is not None else []
    done = run_cli(*args, "--gateway", suite.gateway_address, *extra, data_dir=suite.plan.data_dir)
    return done.returncode, done.stdout, done.stderr


def new_key(suite: Suite, *options: str) -> str:
    code, out, err = cli(suite, "keys", "create", *options)
    assert code == 0, err
    last = out.strip().splitlines()[-1]
    assert KEY_LINE.match(last), out
    return last


def store_path(suite: Suite) -> Path:
    return suite.plan.data_dir / "gateway.db"


@pytest.fixture(scope="module")
def analysis_id(suite: Suite, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SUCCEEDED analysis of the operator tenant, made with the CLI and the local admin key."""
    folder = tmp_path_factory.mktemp("security-input")
    path = folder / "chats.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in sampledata.generate(80, 5)))
    code, _, err = cli(suite, "analyze", str(path), "--out", str(folder / "out"))
    assert code == 0, err
    return str(json.loads((folder / "out" / "analysis.json").read_text())["analysis"]["id"])


def test_no_or_bad_credentials_are_refused(suite: Suite, tmp_path: Path) -> None:
    done = run_cli("list", "--gateway", suite.gateway_address, data_dir=tmp_path)  # no admin.key there
    assert done.returncode == 1 and "UNAUTHENTICATED" in done.stderr
    code, _, err = cli(suite, "list", key="bxk_000000000000_" + "A" * 43)
    assert code == 1 and "UNAUTHENTICATED: unknown API key" in err


def test_roles_tenants_expiry_and_revocation(suite: Suite, analysis_id: str) -> None:
    viewer = new_key(suite, "--role", "viewer", "--description", "dashboards")
    code, out, err = cli(suite, "status", analysis_id, key=viewer)
    assert code == 0, err
    code, _, err = cli(suite, "cancel", analysis_id, key=viewer)
    assert code == 1 and "PERMISSION_DENIED" in err
    code, _, err = cli(suite, "keys", "list", key=viewer)
    assert code == 1 and "PERMISSION_DENIED" in err

    other = new_key(suite, "--tenant", "acme", "--role", "admin")
    code, _, err = cli(suite, "status", analysis_id, key=other)
    assert code == 1 and "NOT_FOUND" in err
    code, out, _ = cli(suite, "list", "--json", key=other)
    assert code == 0 and analysis_id not in out

    short = new_key(suite, "--role", "viewer", "--expires", "1s")
    time.sleep(1.5)
    code, _, err = cli(suite, "list", key=short)
    assert code == 1 and "expired" in err

    key_id = viewer.split("_")[1]
    code, out, err = cli(suite, "keys", "list", "--json")
    assert code == 0, err
    listed = {row["id"]: row for row in json.loads(out)}
    assert listed[key_id]["role"] == "viewer" and listed[key_id]["description"] == "dashboards"
    assert viewer not in out  # never the key itself
    code, _, err = cli(suite, "keys", "revoke", key_id)
    assert code == 0, err
    code, _, err = cli(suite, "status", analysis_id, key=viewer)
    assert code == 1 and "revoked" in err
    with sqlite3.connect(store_path(suite)) as connection:
        hashes = [row[0] for row in connection.execute("SELECT key_hash FROM api_keys")]
    assert viewer not in hashes and all(len(value) == 64 for value in hashes)


def test_erase_and_export_a_user(suite: Suite, analysis_id: str, tmp_path: Path) -> None:
    user = sampledata.generate(80, 5)[0]["user_id"]
    target = tmp_path / "user.json"
    code, _, err = cli(suite, "users", "export", user, "--out", str(target))
    assert code == 0, err
    exported = json.loads(target.read_text())
    assert json.dumps(exported).count(user) >= 1
    code, out, err = cli(suite, "users", "erase", user, "--yes")
    assert code == 0, err
    assert analysis_id in out  # its results are marked stale
    assert rows_mentioning(store_path(suite), user) == {}
    code, _, err = cli(suite, "users", "export", user, "--out", str(target))
    assert code == 0, err
    assert user not in json.dumps(json.loads(target.read_text()).get("analyses", []))
    with GatewayClient(suite.gateway_address, api_key=suite.admin_key) as client:
        results = client.stub.GetAnalysisResults(gateway_pb2.GetAnalysisResultsRequest(id=analysis_id))
    assert results.analysis.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED


def test_audit_verify_export_and_tampering(suite: Suite, analysis_id: str, tmp_path: Path) -> None:
    code, out, err = cli(suite, "audit", "verify")
    assert code == 0, err
    assert "intact" in out
    report = tmp_path / "audit.csv"
    code, _, err = cli(suite, "audit", "export", "--from", "1d", "--format", "csv", "--out", str(report))
    assert code == 0, err
    header, *lines = report.read_text().splitlines()
    assert header.startswith("sequence,time,actor,tenant_id,peer,rpc,resource,action,outcome")
    assert any(",create," in line and f"analyses/{analysis_id}" in line for line in lines)
    assert any(",user.erase," in line for line in lines)
    assert any(",auth.failure," in line for line in lines)
    with sqlite3.connect(store_path(suite)) as connection:
        (sequence,) = connection.execute(
            "SELECT min(sequence) FROM audit_log WHERE action = 'key.create'"
        ).fetchone()
        connection.execute("DELETE FROM audit_log WHERE sequence = ?", (sequence,))
    code, _, err = cli(suite, "audit", "verify")
    assert code == 1
    assert f"record {sequence}" in err or f"record {sequence + 1}" in err


def test_repeated_failures_lock_the_address_out(suite: Suite) -> None:
    for _ in range(10):
        code, _, err = cli(suite, "list", key="bxk_111111111111_" + "B" * 43)
        assert code == 1 and "UNAUTHENTICATED" in err
    code, _, err = cli(suite, "list")
    assert code == 1 and "locked out" in err
    with GatewayClient(suite.gateway_address) as client, pytest.raises(grpc.RpcError) as caught:
        client.stub.ListAnalyses(gateway_pb2.ListAnalysesRequest())
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
