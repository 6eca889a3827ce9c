"""Fixtures for the gateway tests: the REAL embedding, facets and clustering services, started once per
session with the shared bootstrap, and gateways on 127.0.0.1:0 over temporary SQLite stores.

Integration test modules share the session's event loop (``pytestmark = pytest.mark.asyncio(loop_scope=
"session")``) because the downstream servers live on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
import pytest_asyncio
from prometheus_client import REGISTRY

from briefxai.common.v1 import common_pb2
from briefxai.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from briefxai_common.apikeys import generate_api_key
from briefxai_common.bootstrap import RunningService, start_service
from briefxai_common.interceptors import metadata_interceptors
from briefxai_gateway.server import Gateway, build_gateway
from briefxai_gateway.settings import GatewaySettings
from briefxai_gateway.store import Store
from tests.support.ports import free_port

LOCAL: dict[str, Any] = {"host": "127.0.0.1", "grpc_port": 0, "http_port": 0, "grace_period_seconds": 0}
TERMINAL = {
    gateway_pb2.ANALYSIS_STATE_SUCCEEDED,
    gateway_pb2.ANALYSIS_STATE_FAILED,
    gateway_pb2.ANALYSIS_STATE_CANCELLED,
}

TOPICS = {
    "passwords": [
        "I forgot my password and cannot log in to my account",
        "How do I reset the password for my email account?",
        "The password reset link you sent me has expired",
        "My account is locked after too many wrong password attempts",
    ],
    "cooking": [
        "Can you give me a recipe for banana bread with walnuts?",
        "How long should I bake a chocolate cake at 180 degrees?",
        "What can I cook for dinner with rice, beans and tomatoes?",
        "Suggest a vegetarian lasagna recipe for six people",
    ],
    "python": [
        "My Python script raises a KeyError when reading the dictionary",
        "How do I sort a list of dictionaries by a key in Python?",
        "Write a Python function that parses a CSV file into rows",
        "Why does my pandas dataframe merge produce duplicate rows?",
    ],
}


def conversation(index: int, topic: str | None = None) -> common_pb2.Conversation:
    """A small two-turn chat on one of three topics; user ids repeat across conversations."""
    names = sorted(TOPICS)
    topic = topic or names[index % len(names)]
    texts = TOPICS[topic]
    question = f"{texts[index % len(texts)]} (case {index})"
    return common_pb2.Conversation(
        id=f"conv-{index:04d}",
        user_id=f"user-{index % 7}",
        messages=[
            common_pb2.Message(role=common_pb2.ROLE_USER, content=question),
            common_pb2.Message(role=common_pb2.ROLE_ASSISTANT, content=f"Here is some help about {topic}."),
        ],
        metadata={"topic": topic},
    )


def conversations(count: int, start: int = 0) -> list[common_pb2.Conversation]:
    return [conversation(i) for i in range(start, start + count)]


def server_calls(service: str, method: str) -> float:
    """How many calls a server in this process has handled (grpc_server_handled_total, any code)."""
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name != "grpc_server_handled":
            continue
        for sample in metric.samples:
            if (
                sample.name == "grpc_server_handled_total"
                and sample.labels.get("grpc_service") == service
                and sample.labels.get("grpc_method") == method
            ):
                total += sample.value
    return total


def metric_value(name: str, labels: dict[str, str] | None = None) -> float:
    value = REGISTRY.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


@dataclass
class Downstream:
    embedding: RunningService
    facets: RunningService
    clustering: RunningService


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def downstream() -> AsyncIterator[Downstream]:
    """The three real downstream services, started once (the embedding model loads in seconds)."""
    # Imported here so that the unit tests in this folder run without the services' heavy imports.
    from briefxai_clustering.server import build_service as build_clustering
    from briefxai_clustering.settings import ClusteringSettings
    from briefxai_embedding.server import build_service as build_embedding
    from briefxai_embedding.settings import EmbeddingSettings
    from briefxai_facets.server import build_service as build_facets
    from briefxai_facets.settings import FacetsSettings

    embedding = await start_service(build_embedding(EmbeddingSettings.load(**LOCAL, torch_threads=2)))
    facets = await start_service(build_facets(FacetsSettings.load(**LOCAL)))
    # Test data stays under umap_min_points (the map uses PCA), so the UMAP warm-up is skipped.
    clustering = await start_service(
        build_clustering(ClusteringSettings.load(**LOCAL, warm_up_map=False, compute_threads=1))
    )
    yield Downstream(embedding, facets, clustering)
    for running in (clustering, facets, embedding):
        await running.stop(grace=0)


@dataclass
class GatewayHandle:
    running: RunningService
    gateway: Gateway
    channel: grpc.aio.Channel
    stub: gateway_pb2_grpc.AnalysisServiceAsyncStub
    settings: GatewaySettings
    # The bootstrap admin key the handle's channel sends.
    admin_key: str = ""
    stopped: bool = field(default=False)

    @property
    def bearer(self) -> dict[str, str]:
        """The HTTP header that authenticates as the admin key."""
        return {"Authorization": f"Bearer {self.admin_key}"}

    @property
    def store(self) -> Store:
        assert self.gateway.store is not None
        return self.gateway.store

    async def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            await self.channel.close(None)
            await self.running.stop(grace=0)

    async def wait(self, analysis_id: str, limit: float = 120.0) -> list[gateway_pb2.WatchAnalysisResponse]:
        """Every WatchAnalysis update until the stream ends (at a terminal state)."""

        async def collect() -> list[gateway_pb2.WatchAnalysisResponse]:
            return [
                u async for u in self.stub.WatchAnalysis(gateway_pb2.WatchAnalysisRequest(id=analysis_id))
            ]

        return await asyncio.wait_for(collect(), limit)

    async def wait_until(
        self,
        analysis_id: str,
        predicate: Callable[[gateway_pb2.WatchAnalysisResponse], bool],
        limit: float = 60.0,
    ) -> gateway_pb2.WatchAnalysisResponse:
        """The first Watch update that satisfies ``predicate``."""

        async def find() -> gateway_pb2.WatchAnalysisResponse:
            async for update in self.stub.WatchAnalysis(gateway_pb2.WatchAnalysisRequest(id=analysis_id)):
                if predicate(update):
                    return update
            raise AssertionError(f"watch of {analysis_id} ended without the awaited update")

        return await asyncio.wait_for(find(), limit)


GatewayFactory = Callable[..., Awaitable[GatewayHandle]]


def every_downstream(**values: Any) -> dict[str, dict[str, Any]]:
    """The same retry policy or breaker settings for each downstream service, for the gateway's
    ``retry_policies`` / ``circuit_breakers``."""
    return {name: dict(values) for name in ("facets", "embedding", "clustering")}


def retry_until_back(**values: Any) -> dict[str, dict[str, Any]]:
    """Retry policies that keep retrying while a downstream restarts (a retry budget that does not run out)."""
    return every_downstream(budget_min_retries_per_second=10_000, **values)


def gateway_settings(store_url: str, downstream: Downstream, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        **LOCAL,
        "store_url": store_url,
        "embedding_address": downstream.embedding.address,
        "facets_address": downstream.facets.address,
        "clustering_address": downstream.clustering.address,
        "batch_size": 8,
        "max_inflight_batches": 2,
        "retry_policies": every_downstream(max_attempts=2, initial_delay_ms=10, max_delay_ms=50),
        "circuit_breakers": every_downstream(failure_threshold=3, open_timeout_ms=60_000),
        "watch_poll_seconds": 0.5,
    }
    values.update(overrides)
    return GatewaySettings.load(**values)


def admin_key_file(folder: Path) -> Path:
    """``folder/admin.key``, created with a new API key when missing (as ``briefxai up`` does)."""
    path = folder / "admin.key"
    if not path.exists():
        path.write_text(generate_api_key() + "\n")
        path.chmod(0o600)
    return path


def authorized_channel(address: str, key: str | None) -> grpc.aio.Channel:
    """A channel to a gateway whose every call carries ``authorization: Bearer <key>`` (none: no key)."""
    pairs = (("authorization", f"Bearer {key}"),) if key else ()
    return grpc.aio.insecure_channel(address, interceptors=metadata_interceptors(pairs))


@pytest_asyncio.fixture(loop_scope="session")
async def start_gateway(tmp_path: Path, downstream: Downstream) -> AsyncIterator[GatewayFactory]:
    """``await start_gateway(**overrides)`` starts a gateway (default store: a fresh SQLite file)."""
    handles: list[GatewayHandle] = []

    async def start(**overrides: Any) -> GatewayHandle:
        overrides.setdefault("store_url", f"sqlite:///{tmp_path}/gateway.db")
        overrides.setdefault("auth", {"bootstrap_admin_key_file": str(admin_key_file(tmp_path))})
        settings = gateway_settings(downstream=downstream, **overrides)
        service, gateway = build_gateway(settings)
        running = await start_service(service)
        key = admin_key_file(tmp_path).read_text().strip()
        channel = authorized_channel(running.address, key)
        stub = cast(
            "gateway_pb2_grpc.AnalysisServiceAsyncStub", gateway_pb2_grpc.AnalysisServiceStub(channel)
        )
        handle = GatewayHandle(running, gateway, channel, stub, settings, key)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        await handle.stop()


@pytest.fixture
def closed_address() -> str:
    return f"127.0.0.1:{free_port()}"
