"""The chart's auth, audit and retention values: the gateway's bootstrap admin API key and its audit
checkpoint key come from Secrets (made by the chart, random and kept, unless ones are named), mounted into
the gateway's pod and named by its config, with the JWT settings and the JWKS beside them. A gateway
started from the rendered config, its key files moved to where the test can write them, accepts the
generated admin key and a JWT signed by a key of the JWKS, and refuses calls without either."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import helm_python as helm
import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from briefxai.gateway.v1 import gateway_pb2, gateway_pb2_grpc, security_pb2, security_pb2_grpc
from briefxai_common.apikeys import KEY_PATTERN, key_id_of
from briefxai_common.bootstrap import RunningService, start_service
from briefxai_gateway.server import build_service
from briefxai_gateway.settings import GatewaySettings
from tests.deploy.chart import WORKERS, Manifest, lint, mounted_files, render, validate
from tests.support.ports import free_port

AUTH_DIR = "/etc/briefxai-auth"
ISSUER = "https://idp.example.test"
JWT_VALUES: dict[str, Any] = {
    "auth": {
        "jwt": {
            "issuer": ISSUER,
            "audience": "briefxai",
            "tenantClaim": "org",
            "roleClaim": "perm",
            "jwks": {"configMap": "idp-keys"},
        }
    },
    "audit": {"retentionDays": 30},
    "retention": {"analysisMaxAgeDays": 90},
    "gateway": {"config": {"auth": {"lockout": {"max_failures": 3}}, "audit": {"record_reads": False}}},
}


def one(manifests: list[Manifest], kind: str, name: str) -> dict[str, Any]:
    found = [m.body for m in manifests if m.kind == kind and m.name == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def pod_of(manifests: list[Manifest], service: str) -> dict[str, Any]:
    return dict(one(manifests, "Deployment", f"briefxai-{service}")["spec"]["template"]["spec"])


def gateway_config(manifests: list[Manifest]) -> dict[str, Any]:
    text = one(manifests, "ConfigMap", "briefxai-config")["data"]["briefxai.yaml"]
    return dict(yaml.safe_load(text)["gateway"])


def secret_value(manifests: list[Manifest], name: str, key: str) -> str:
    return base64.b64decode(one(manifests, "Secret", name)["data"][key]).decode()


def auth_sources(manifests: list[Manifest]) -> list[dict[str, Any]]:
    volumes = {v["name"]: v for v in pod_of(manifests, "gateway")["volumes"]}
    return list(volumes["auth"]["projected"]["sources"])


def local_config(manifests: list[Manifest], root: Path) -> Path:
    """The rendered config file with the gateway's mounted files (those the chart renders) written under
    ``root`` and its paths to them moved there, as the pod would see them at AUTH_DIR."""
    pod = pod_of(manifests, "gateway")
    text = one(manifests, "ConfigMap", "briefxai-config")["data"]["briefxai.yaml"]
    assert AUTH_DIR in text
    for path, content in mounted_files(manifests, pod, pod["containers"][0]).items():
        if path.startswith(f"{AUTH_DIR}/"):
            local = root / Path(path).name
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(content)
    config = root / "briefxai.yaml"
    config.write_text(text.replace(f"{AUTH_DIR}/", f"{root}/"))
    return config


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("BRIEFXAI_")]:
        monkeypatch.delenv(name)


def test_the_chart_makes_a_kept_admin_key_and_checkpoint_key() -> None:
    manifests = render({})
    admin = one(manifests, "Secret", "briefxai-admin-key")
    checkpoint = one(manifests, "Secret", "briefxai-audit-checkpoint-key")
    for secret in (admin, checkpoint):
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    key = secret_value(manifests, "briefxai-admin-key", "admin.key")
    assert KEY_PATTERN.match(key), key
    assert len(key_id_of(key)) == 12
    signing_key = secret_value(manifests, "briefxai-audit-checkpoint-key", "checkpoint.key")
    assert len(signing_key) == 64 and int(signing_key, 16) >= 0
    again = render({})
    assert secret_value(again, "briefxai-admin-key", "admin.key") != key  # random on each install
    assert secret_value(again, "briefxai-audit-checkpoint-key", "checkpoint.key") != signing_key


def test_the_keys_are_mounted_into_the_gateway_only_and_named_by_its_config() -> None:
    manifests = render({})
    pod = pod_of(manifests, "gateway")
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["auth"] == {"name": "auth", "mountPath": AUTH_DIR, "readOnly": True}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["auth"]["projected"]["defaultMode"] == 0o440
    assert auth_sources(manifests) == [
        {"secret": {"name": "briefxai-admin-key", "items": [{"key": "admin.key", "path": "admin.key"}]}},
        {
            "secret": {
                "name": "briefxai-audit-checkpoint-key",
                "items": [{"key": "checkpoint.key", "path": "checkpoint.key"}],
            }
        },
    ]
    assert sorted(mounted_files(manifests, pod, pod["containers"][0])) == [
        f"{AUTH_DIR}/admin.key",
        f"{AUTH_DIR}/checkpoint.key",
        "/etc/briefxai/briefxai.yaml",
    ]
    for worker in WORKERS:
        assert "auth" not in {v["name"] for v in pod_of(manifests, worker)["volumes"]}, worker
    config = gateway_config(manifests)
    assert config["auth"] == {"mode": "on", "bootstrap_admin_key_file": f"{AUTH_DIR}/admin.key"}
    assert config["audit"] == {"retention_days": 0, "checkpoint_key_file": f"{AUTH_DIR}/checkpoint.key"}
    assert config["retention"] == {"analysis_max_age_days": 0}


def test_named_secrets_replace_the_charts() -> None:
    values = {
        "auth": {"adminKey": {"existingSecret": "ops-key", "key": "api-key"}},
        "audit": {"checkpointKey": {"existingSecret": "audit-hmac", "key": "hmac"}},
    }
    manifests = render(values)
    assert [m.name for m in manifests if m.kind == "Secret"] == ["briefxai-service-token"]
    assert auth_sources(manifests) == [
        {"secret": {"name": "ops-key", "items": [{"key": "api-key", "path": "admin.key"}]}},
        {"secret": {"name": "audit-hmac", "items": [{"key": "hmac", "path": "checkpoint.key"}]}},
    ]
    assert gateway_config(manifests)["auth"]["bootstrap_admin_key_file"] == f"{AUTH_DIR}/admin.key"


def test_auth_and_jwt_values_lint_and_render_valid_manifests() -> None:
    for values in (
        JWT_VALUES,
        {"auth": {"mode": "off", "jwt": {"issuer": ISSUER, "jwks": {"existingSecret": "k"}}}},
    ):
        assert lint(values) == []
        assert validate(render(values)) == []


def test_jwt_values_reach_the_gateway_config_with_the_jwks_mounted() -> None:
    manifests = render(JWT_VALUES)
    config = gateway_config(manifests)
    assert config["auth"] == {
        "mode": "on",
        "bootstrap_admin_key_file": f"{AUTH_DIR}/admin.key",
        "lockout": {"max_failures": 3},  # the gateway's own config keys stay beside the chart's
        "jwt": {
            "issuer": ISSUER,
            "audience": "briefxai",
            "tenant_claim": "org",
            "role_claim": "perm",
            "jwks_file": f"{AUTH_DIR}/jwks.json",
        },
    }
    assert config["audit"] == {
        "retention_days": 30,
        "checkpoint_key_file": f"{AUTH_DIR}/checkpoint.key",
        "record_reads": False,
    }
    assert config["retention"] == {"analysis_max_age_days": 90}
    assert auth_sources(manifests)[-1] == {
        "configMap": {"name": "idp-keys", "items": [{"key": "jwks.json", "path": "jwks.json"}]}
    }
    from_secret = render({"auth": {"jwt": {"issuer": ISSUER, "jwks": {"existingSecret": "idp", "key": "k"}}}})
    assert auth_sources(from_secret)[-1] == {
        "secret": {"name": "idp", "items": [{"key": "k", "path": "jwks.json"}]}
    }


@pytest.mark.parametrize(("mode", "expected"), [("off", "off"), (False, "off"), (True, "on")])
def test_auth_mode_is_on_or_off_even_when_yaml_reads_a_boolean(mode: Any, expected: str) -> None:
    config = gateway_config(render({"auth": {"mode": mode}}))
    assert config["auth"]["mode"] == expected


BAD_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "an unknown auth mode": ({"auth": {"mode": "maybe"}}, "/auth/mode"),
    "a JWT issuer without keys": ({"auth": {"jwt": {"issuer": ISSUER}}}, "/auth/jwt"),
    "a JWKS from a Secret and a ConfigMap": (
        {"auth": {"jwt": {"issuer": ISSUER, "jwks": {"existingSecret": "a", "configMap": "b"}}}},
        "/auth/jwt/jwks",
    ),
    "an empty admin key name": ({"auth": {"adminKey": {"key": ""}}}, "/auth/adminKey/key"),
    "negative audit retention": ({"audit": {"retentionDays": -1}}, "/audit/retentionDays"),
    "an unknown retention value": ({"retention": {"maxAgeDays": 3}}, "/retention"),
    "auth.mode in the gateway's config": (
        {"gateway": {"config": {"auth": {"mode": "off"}}}},
        "/gateway/config/auth/mode",
    ),
    "a key file in the gateway's config": (
        {"gateway": {"config": {"auth": {"bootstrap_admin_key_file": "/tmp/k"}}}},  # noqa: S108  a refused value
        "/gateway/config/auth/bootstrap_admin_key_file",
    ),
    "a JWT issuer in the gateway's config": (
        {"gateway": {"config": {"auth": {"jwt": {"issuer": ISSUER}}}}},
        "/gateway/config/auth/jwt/issuer",
    ),
    "the checkpoint key in the gateway's config": (
        {"gateway": {"config": {"audit": {"checkpoint_key_file": "k"}}}},
        "/gateway/config/audit/checkpoint_key_file",
    ),
    "analysis retention in the gateway's config": (
        {"gateway": {"config": {"retention": {"analysis_max_age_days": 1}}}},
        "/gateway/config/retention/analysis_max_age_days",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_auth_values_are_refused_by_lint_and_template(case: str) -> None:
    bad, where = BAD_VALUES[case]
    problems = lint(bad)
    assert any(where in problem for problem in problems), problems
    with pytest.raises(helm.HelmError, match=where):
        render(bad)


def test_the_rendered_config_loads_with_its_key_files(tmp_path: Path, clean_env: None) -> None:
    manifests = render(JWT_VALUES)
    settings = GatewaySettings.load(local_config(manifests, tmp_path))
    key_file = Path(settings.auth.bootstrap_admin_key_file)
    assert key_file == tmp_path / "admin.key"
    assert key_file.read_text() == secret_value(manifests, "briefxai-admin-key", "admin.key")
    assert Path(settings.audit.checkpoint_key_file).read_text() == secret_value(
        manifests, "briefxai-audit-checkpoint-key", "checkpoint.key"
    )
    assert (settings.auth.mode, settings.audit.retention_days) == ("on", 30)
    assert settings.retention.analysis_max_age_days == 90
    assert settings.auth.lockout.max_failures == 3 and not settings.audit.record_reads
    jwt_settings = settings.auth.jwt
    assert (jwt_settings.issuer, jwt_settings.audience) == (ISSUER, "briefxai")
    assert (jwt_settings.tenant_claim, jwt_settings.role_claim) == ("org", "perm")
    assert jwt_settings.jwks_file == str(tmp_path / "jwks.json")  # the user's ConfigMap: not rendered


@dataclass(frozen=True)
class Deployed:
    running: RunningService
    admin_key: str
    signing_key: ec.EllipticCurvePrivateKey


@pytest.fixture
async def gateway(tmp_path: Path, clean_env: None) -> AsyncIterator[Deployed]:
    """A gateway started from the rendered config (JWT_VALUES), its key files and the JWKS (the user's
    ConfigMap) where the config points, on 127.0.0.1 with a fresh SQLite store and no workers."""
    manifests = render(JWT_VALUES)
    path = local_config(manifests, tmp_path)
    signing_key = ec.generate_private_key(ec.SECP256R1())
    public = ECAlgorithm.to_jwk(signing_key.public_key(), as_dict=True) | {"kid": "idp-1"}
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [public]}))
    closed = {f"{worker}_address": f"127.0.0.1:{free_port()}" for worker in WORKERS}
    settings = GatewaySettings.load(
        path,
        host="127.0.0.1",
        grpc_port=0,
        http_port=0,
        grace_period_seconds=0,
        store_url=f"sqlite:///{tmp_path}/gateway.db",
        **closed,
    )
    running = await start_service(build_service(settings))
    try:
        yield Deployed(running, secret_value(manifests, "briefxai-admin-key", "admin.key"), signing_key)
    finally:
        await running.stop(grace=0)


def bearer(credential: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {credential}"),)


def token(key: ec.EllipticCurvePrivateKey, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": "briefxai", "sub": "ana", "iat": now, "exp": now + 600} | claims
    return jwt.encode(body, key, algorithm="ES256", headers={"kid": "idp-1"})


async def test_the_gateway_accepts_the_charts_admin_key(gateway: Deployed) -> None:
    async with grpc.aio.insecure_channel(gateway.running.address) as channel:
        security = security_pb2_grpc.SecurityServiceStub(channel)
        listed = await security.ListApiKeys(
            security_pb2.ListApiKeysRequest(), metadata=bearer(gateway.admin_key)
        )
        (stored,) = listed.api_keys
        assert (stored.id, stored.role, stored.tenant_id) == (
            key_id_of(gateway.admin_key),
            security_pb2.ROLE_ADMIN,
            "default",
        )
        verified = await security.VerifyAuditLog(
            security_pb2.VerifyAuditLogRequest(), metadata=bearer(gateway.admin_key)
        )
        assert verified.intact and verified.records_checked >= 2, verified
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await security.ListApiKeys(security_pb2.ListApiKeysRequest())
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_the_gateway_accepts_a_jwt_with_the_charts_claims(gateway: Deployed) -> None:
    async with grpc.aio.insecure_channel(gateway.running.address) as channel:
        analyses = gateway_pb2_grpc.AnalysisServiceStub(channel)
        by_claims = token(gateway.signing_key, org="acme", perm="viewer")
        await analyses.ListAnalyses(gateway_pb2.ListAnalysesRequest(), metadata=bearer(by_claims))
        security = security_pb2_grpc.SecurityServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as viewer:
            await security.ListApiKeys(security_pb2.ListApiKeysRequest(), metadata=bearer(by_claims))
        assert viewer.value.code() == grpc.StatusCode.PERMISSION_DENIED
        other_key = token(ec.generate_private_key(ec.SECP256R1()), org="acme", perm="admin")
        with pytest.raises(grpc.aio.AioRpcError) as forged:
            await analyses.ListAnalyses(gateway_pb2.ListAnalysesRequest(), metadata=bearer(other_key))
        assert forged.value.code() == grpc.StatusCode.UNAUTHENTICATED
        default_claims = token(gateway.signing_key, tenant="acme", role="admin")
        with pytest.raises(grpc.aio.AioRpcError) as unclaimed:
            await analyses.ListAnalyses(gateway_pb2.ListAnalysesRequest(), metadata=bearer(default_claims))
        assert unclaimed.value.code() == grpc.StatusCode.UNAUTHENTICATED
