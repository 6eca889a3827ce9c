"""TLS and mTLS on a real worker (the clustering service, through the shared bootstrap), with certificates
made for the test: its gRPC port, its HTTPS side port, the health check module, and the settings'
rules."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from briefxai.clustering.v1 import clustering_pb2, clustering_pb2_grpc
from briefxai_clustering.server import build_service
from briefxai_clustering.settings import ClusteringSettings
from briefxai_common.bootstrap import RunningService, start_service
from briefxai_common.channels import create_channel
from briefxai_common.config import ConfigError, TLSSettings
from tests.support.certs import Certificates, Pair, make_certificates
from tests.support.services import local_settings

SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def server_tls(certs: Certificates, *, mtls: bool = False) -> dict[str, Any]:
    tls = {"cert_file": str(certs.server.cert), "key_file": str(certs.server.key)}
    if mtls:
        tls["client_ca_file"] = str(certs.ca)
    return tls


async def start_clustering(**values: Any) -> RunningService:
    settings = local_settings(ClusteringSettings, warm_up_map=False, compute_threads=1, **values)
    return await start_service(build_service(settings))


@pytest.fixture
async def tls_server(certs: Certificates) -> AsyncIterator[RunningService]:
    running = await start_clustering(tls=server_tls(certs))
    yield running
    await running.stop(grace=0)


@pytest.fixture
async def mtls_server(certs: Certificates) -> AsyncIterator[RunningService]:
    running = await start_clustering(tls=server_tls(certs, mtls=True))
    yield running
    await running.stop(grace=0)


def credentials(certs: Certificates, client: Pair | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=certs.ca.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )


async def limits(channel: grpc.aio.Channel) -> clustering_pb2.GetLimitsResponse:
    stub = clustering_pb2_grpc.ClusteringServiceStub(channel)
    return await stub.GetLimits(clustering_pb2.GetLimitsRequest(), timeout=10)


async def health(channel: grpc.aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    return int(reply.status)


async def test_a_tls_client_is_served_and_a_plaintext_one_is_not(
    tls_server: RunningService, certs: Certificates
) -> None:
    async with grpc.aio.secure_channel(tls_server.address, credentials(certs)) as channel:
        assert await health(channel) == SERVING
        assert (await limits(channel)).max_vectors > 0
    async with grpc.aio.insecure_channel(tls_server.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await limits(channel)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_client_that_does_not_trust_the_ca_is_refused(
    tls_server: RunningService, certs: Certificates
) -> None:
    untrusting = grpc.ssl_channel_credentials(root_certificates=certs.other_ca.read_bytes())
    async with grpc.aio.secure_channel(tls_server.address, untrusting) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await limits(channel)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mtls_serves_clients_with_a_certificate_from_the_ca_only(
    mtls_server: RunningService, certs: Certificates
) -> None:
    async with grpc.aio.secure_channel(mtls_server.address, credentials(certs, certs.client)) as channel:
        assert (await limits(channel)).max_vectors > 0
    for client in (None, certs.rogue_client):
        async with grpc.aio.secure_channel(mtls_server.address, credentials(certs, client)) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await limits(channel)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, client


async def test_create_channel_presents_the_callers_certificate(
    mtls_server: RunningService, certs: Certificates
) -> None:
    """The gateway's channels: its own certificate as the client's, the CA from ``ca_file``, and the name
    checked overridden by ``server_name`` (the server certificate has no SAN for this name)."""
    caller = TLSSettings.model_validate(
        {"cert_file": str(certs.client.cert), "key_file": str(certs.client.key), "ca_file": str(certs.ca)}
    )
    channel = create_channel(mtls_server.address, tls=caller)
    try:
        assert (await limits(channel)).max_vectors > 0
    finally:
        await channel.close(None)
    wrong_name = caller.model_copy(update={"server_name": "somewhere.else"})
    channel = create_channel(mtls_server.address, tls=wrong_name)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await limits(channel)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await channel.close(None)
    no_certificate = TLSSettings.model_validate({"ca_file": str(certs.ca), "server_name": "localhost"})
    channel = create_channel(mtls_server.address, tls=no_certificate)
    try:
        with pytest.raises(grpc.aio.AioRpcError):
            await limits(channel)
    finally:
        await channel.close(None)


def https_get(port: int, path: str, context: ssl.SSLContext | None) -> tuple[int, dict[str, Any]]:
    scheme = "https" if context is not None else "http"
    request = urllib.request.Request(f"{scheme}://127.0.0.1:{port}{path}")  # noqa: S310  127.0.0.1 only
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def test_the_http_side_port_serves_https_without_asking_for_a_client_certificate(
    mtls_server: RunningService, certs: Certificates
) -> None:
    context = ssl.create_default_context(cafile=str(certs.ca))
    status, body = await asyncio.to_thread(https_get, mtls_server.http_port, "/health", context)
    assert status == 200 and body["status"] == "healthy", body
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        await asyncio.to_thread(https_get, mtls_server.http_port, "/health", None)


async def healthcheck(port: int, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "briefxai_common.healthcheck",
        "--port",
        str(port),
        "--section",
        "clustering",
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def test_the_health_check_module_reads_the_services_tls_settings(
    mtls_server: RunningService, certs: Certificates
) -> None:
    """As the image's HEALTHCHECK runs it: the container's environment names the service's certificate,
    key and client CA; the check trusts that CA and presents the certificate (the port asks for one)."""
    env = {
        "BRIEFXAI_CLUSTERING_TLS__CERT_FILE": str(certs.server.cert),
        "BRIEFXAI_CLUSTERING_TLS__KEY_FILE": str(certs.server.key),
        "BRIEFXAI_CLUSTERING_TLS__CLIENT_CA_FILE": str(certs.ca),
    }
    code, said = await healthcheck(mtls_server.grpc_port, env)
    assert code == 0 and said.endswith(": SERVING\n"), said
    code, said = await healthcheck(mtls_server.grpc_port, {})
    assert code == 1 and "UNAVAILABLE" in said, said


def test_settings_refuse_half_a_configuration(certs: Certificates, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cert_file and key_file go together"):
        local_settings(ClusteringSettings, tls={"cert_file": str(certs.server.cert)})
    with pytest.raises(ConfigError, match="client_ca_file"):
        local_settings(ClusteringSettings, tls={"client_ca_file": str(certs.ca)})
    with pytest.raises(ConfigError, match="not a readable file"):
        local_settings(ClusteringSettings, tls={"ca_file": str(tmp_path / "missing.pem")})
    settings = local_settings(ClusteringSettings, tls=server_tls(certs, mtls=True))
    assert settings.tls.enabled and settings.tls.calls_secure
