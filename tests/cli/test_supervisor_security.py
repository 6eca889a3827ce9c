"""The supervisor's secrets and TLS: on first start it writes ``admin.key`` and ``service.token`` (mode
0600) into the data dir and keeps them for later starts; every service gets the token (a worker it
supervises refuses calls without it); its readiness probe speaks TLS to a service configured for it."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import grpc
import pytest

from briefxai.clustering.v1 import clustering_pb2, clustering_pb2_grpc
from briefxai_cli.supervisor import ADMIN_KEY_FILE, SERVICE_TOKEN_FILE, Suite, SuitePlan, plan_suite
from briefxai_common.apikeys import looks_like_api_key
from briefxai_common.service_auth import SERVICE_TOKEN_HEADER
from tests.support.certs import make_certificates

LIGHT = {"BRIEFXAI_CLUSTERING_WARM_UP_MAP": "false", "BRIEFXAI_CLUSTERING_COMPUTE_THREADS": "1"}


def clustering_only(data_dir: Path) -> SuitePlan:
    full = plan_suite(data_dir, base_port=0)
    return SuitePlan(tuple(s for s in full.services if s.name == "clustering"), full.data_dir, full.store_url)


async def get_limits(channel: grpc.aio.Channel, token: str | None) -> clustering_pb2.GetLimitsResponse:
    metadata = ((SERVICE_TOKEN_HEADER, token),) if token is not None else None
    stub = clustering_pb2_grpc.ClusteringServiceStub(channel)
    return await stub.GetLimits(clustering_pb2.GetLimitsRequest(), metadata=metadata, timeout=10)


async def calls(address: str, token: str) -> tuple[grpc.StatusCode, int]:
    async with grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await get_limits(channel, None)
        served = await get_limits(channel, token)
    return refused.value.code(), served.max_vectors


def test_first_start_writes_the_secrets_and_the_workers_require_the_token(tmp_path: Path) -> None:
    plan = clustering_only(tmp_path)
    suite = Suite(plan, extra_env=LIGHT)
    try:
        suite.start(timeout=300)
        for name in (ADMIN_KEY_FILE, SERVICE_TOKEN_FILE):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
        assert looks_like_api_key(suite.admin_key)
        assert (tmp_path / ADMIN_KEY_FILE).read_text() == suite.admin_key + "\n"
        assert len(suite.service_token) >= 32
        code, max_vectors = asyncio.run(calls(plan.service("clustering").address, suite.service_token))
        assert code == grpc.StatusCode.UNAUTHENTICATED and max_vectors > 0
    finally:
        first = suite.stop()
    assert first == {"clustering": 0}
    again = Suite(clustering_only(tmp_path), extra_env=LIGHT)
    try:
        again.start(timeout=300)
        assert (again.admin_key, again.service_token) == (suite.admin_key, suite.service_token)
    finally:
        again.stop()


def test_the_gateway_is_given_the_admin_key_file_and_the_token(tmp_path: Path) -> None:
    plan = plan_suite(tmp_path, base_port=0)
    suite = Suite(plan)
    suite.admin_key, suite.service_token = "k", "t"
    env = suite._security_env(plan.service("gateway"))
    assert env == {
        "BRIEFXAI_GATEWAY_SERVICE_TOKEN": "t",
        "BRIEFXAI_GATEWAY_AUTH__BOOTSTRAP_ADMIN_KEY_FILE": str((tmp_path / ADMIN_KEY_FILE).resolve()),
    }
    assert suite._security_env(plan.service("facets")) == {"BRIEFXAI_FACETS_SERVICE_TOKEN": "t"}


def test_the_readiness_probe_speaks_tls_to_a_service_that_serves_it(tmp_path: Path) -> None:
    """mTLS on the clustering port, from its environment: the probe trusts its CA and presents its
    certificate, so the suite becomes ready."""
    certs = make_certificates(tmp_path / "certs")
    tls = {
        "BRIEFXAI_CLUSTERING_TLS__CERT_FILE": str(certs.server.cert),
        "BRIEFXAI_CLUSTERING_TLS__KEY_FILE": str(certs.server.key),
        "BRIEFXAI_CLUSTERING_TLS__CLIENT_CA_FILE": str(certs.ca),
    }
    suite = Suite(clustering_only(tmp_path / "data"), extra_env=LIGHT | tls)
    try:
        suite.start(timeout=300)
        assert "clustering" in suite.children
    finally:
        assert suite.stop() == {"clustering": 0}
