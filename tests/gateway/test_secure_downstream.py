"""A gateway and the three real workers all over TLS: the workers require client certificates from the
test CA (mTLS) and the service token, the gateway presents its certificate and sends the token on its
calls and its health watches, and an analysis completes. Its own port serves TLS to the test's client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
import pytest_asyncio

from briefxai.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from briefxai_common.bootstrap import RunningService, start_service
from briefxai_gateway.downstream import DownstreamError
from briefxai_gateway.server import build_gateway
from briefxai_gateway.settings import GatewaySettings
from tests.support.certs import Certificates, make_certificates

from .conftest import LOCAL, TERMINAL, Downstream, conversations, gateway_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")
TOKEN = "shared-between-gateway-and-workers"


@dataclass
class SecureSuite:
    certs: Certificates
    downstream: Downstream


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def secure(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SecureSuite]:
    from briefxai_clustering.server import build_service as build_clustering
    from briefxai_clustering.settings import ClusteringSettings
    from briefxai_embedding.server import build_service as build_embedding
    from briefxai_embedding.settings import EmbeddingSettings
    from briefxai_facets.server import build_service as build_facets
    from briefxai_facets.settings import FacetsSettings

    certs = make_certificates(tmp_path_factory.mktemp("certs"))
    worker: dict[str, Any] = {
        **LOCAL,
        "service_token": TOKEN,
        "tls": {
            "cert_file": str(certs.server.cert),
            "key_file": str(certs.server.key),
            "client_ca_file": str(certs.ca),
        },
    }
    embedding = await start_service(build_embedding(EmbeddingSettings.load(**worker, torch_threads=2)))
    facets = await start_service(build_facets(FacetsSettings.load(**worker)))
    clustering = await start_service(
        build_clustering(ClusteringSettings.load(**worker, warm_up_map=False, compute_threads=1))
    )
    yield SecureSuite(certs, Downstream(embedding, facets, clustering))
    for running in (clustering, facets, embedding):
        await running.stop(grace=0)


def secure_gateway_settings(suite: SecureSuite, store: Path, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "tls": {
            "cert_file": str(suite.certs.server.cert),
            "key_file": str(suite.certs.server.key),
            "ca_file": str(suite.certs.ca),
        },
        "service_token": TOKEN,
    }
    if "auth" in GatewaySettings.model_fields:  # the subject here is gateway -> workers, not callers
        values["auth"] = {"mode": "off"}
    values.update(overrides)
    return gateway_settings(f"sqlite:///{store}", suite.downstream, **values)


async def wait_for_downstreams(gateway: Any, limit: float = 30.0) -> dict[str, str]:
    async def serving() -> dict[str, str]:
        while True:
            statuses = gateway.downstream_health.statuses()
            if set(statuses.values()) == {"SERVING"}:
                return dict(statuses)
            await asyncio.sleep(0.1)

    return await asyncio.wait_for(serving(), limit)


async def test_an_analysis_completes_over_mtls_with_the_service_token(
    secure: SecureSuite, tmp_path: Path
) -> None:
    settings = secure_gateway_settings(secure, tmp_path / "gateway.db")
    service, gateway = build_gateway(settings)
    running: RunningService = await start_service(service)
    credentials = grpc.ssl_channel_credentials(root_certificates=secure.certs.ca.read_bytes())
    channel = grpc.aio.secure_channel(running.address, credentials)
    try:
        stub = cast(
            "gateway_pb2_grpc.AnalysisServiceAsyncStub", gateway_pb2_grpc.AnalysisServiceStub(channel)
        )
        assert set(await wait_for_downstreams(gateway)) == {"embedding", "facets", "clustering"}
        request = gateway_pb2.CreateAnalysisRequest(
            conversations=conversations(12), options=gateway_pb2.AnalysisOptions(k=2, seed=1)
        )
        created = (await stub.CreateAnalysis(request, timeout=30)).analysis

        async def final() -> gateway_pb2.Analysis:
            last = created
            async for update in stub.WatchAnalysis(gateway_pb2.WatchAnalysisRequest(id=created.id)):
                last = update.analysis
                if last.state in TERMINAL:
                    break
            return last

        analysis = await asyncio.wait_for(final(), 120)
        assert analysis.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, analysis.error.message
    finally:
        await channel.close(None)
        await running.stop(grace=0)


async def test_a_gateway_without_the_token_is_refused_by_the_workers(
    secure: SecureSuite, tmp_path: Path
) -> None:
    """Its certificate gets it through mTLS; the token is still required of every call but health."""
    settings = secure_gateway_settings(
        secure,
        tmp_path / "gateway.db",
        service_token="",
        retry_policies={name: {"max_attempts": 1} for name in ("embedding", "facets", "clustering")},
    )
    service, gateway = build_gateway(settings)
    running = await start_service(service)
    try:
        await wait_for_downstreams(gateway)  # health stays open to it
        assert gateway.downstreams is not None
        with pytest.raises(DownstreamError, match=r"UNAUTHENTICATED.*missing service token"):
            await gateway.downstreams.facets.list_facets()
    finally:
        await running.stop(grace=0)
