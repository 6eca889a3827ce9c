"""Several gateway processes on one PostgreSQL database (``tests/support/postgres.py``), in front of the
session's real embedding, facets and clustering services (``conftest.downstream``, in this process).

- Two gateways, analyses created before they start and submitted to both: each analysis is claimed and
  run exactly once (its lease's ``attempts``, the gateways' ``analysis_claimed`` / ``analysis_running``
  log lines, the clustering service's calls), and every one succeeds with complete results.
- A gateway SIGKILLed mid-analysis: another gateway on the same database takes the analysis over only
  once the dead one's lease has run out, resumes it from its checkpoints (only the batches not
  checkpointed are sent again) and ends with the same results as a fault-free run with the same seed.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from sqlalchemy import text

from briefxai.gateway.v1 import gateway_pb2
from briefxai_cli.client import GatewayClient, build_options, to_proto
from briefxai_cli.inputs import ConversationRecord
from briefxai_gateway.convert import conversations_from_pb
from briefxai_gateway.models import AnalysisOptions, Stage
from briefxai_gateway.store import Store
from tests.e2e.checks import check_complete_results
from tests.e2e.support import generated
from tests.support.gateway_process import GatewayProcess

from .conftest import Downstream, server_calls

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(600)]
pytest_plugins = ["tests.support.postgres"]

FACETS = "briefxai.facets.v1.FacetsService"
EMBEDDING = "briefxai.embedding.v1.EmbeddingService"
CLUSTERING = "briefxai.clustering.v1.ClusteringService"
SEED = 11
T = TypeVar("T")


class Gateways:
    """Gateway processes on one store, each in a folder of its own (config, log), stopped at the end."""

    def __init__(self, root: Path, store_url: str, downstream: Downstream) -> None:
        self.root = root
        self.store_url = store_url
        self.downstream = downstream
        self.started: list[GatewayProcess] = []

    def make(self, name: str, **settings: Any) -> GatewayProcess:
        folder = self.root / name
        folder.mkdir()
        process = GatewayProcess(folder)
        process.write(
            store_url=self.store_url,
            embedding_address=self.downstream.embedding.address,
            facets_address=self.downstream.facets.address,
            clustering_address=self.downstream.clustering.address,
            **settings,
        )
        self.started.append(process)
        return process

    def close(self) -> None:
        for process in self.started:
            process.close()


@pytest_asyncio.fixture(loop_scope="session")
async def gateways(tmp_path: Path, postgres_url: str, downstream: Downstream) -> AsyncIterator[Gateways]:
    made = Gateways(tmp_path, postgres_url, downstream)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def store(postgres_url: str) -> Iterator[Store]:
    """The test's own view of the database (a lease owner that claims nothing)."""
    view = Store(postgres_url)
    view.migrate()
    yield view
    view.close()


async def blocking(fn: Callable[..., T], *args: Any) -> T:
    """A blocking call (gRPC client, store, process) off the event loop that serves the downstreams."""
    return await asyncio.to_thread(fn, *args)


async def finished(gateway: GatewayProcess, analysis_id: str) -> gateway_pb2.Analysis:
    def wait() -> gateway_pb2.Analysis:
        with GatewayClient(gateway.address, api_key=gateway.admin_key) as client:
            return client.wait(analysis_id)

    return await asyncio.wait_for(blocking(wait), 300)


async def results(gateway: GatewayProcess, analysis_id: str) -> gateway_pb2.GetAnalysisResultsResponse:
    def read() -> gateway_pb2.GetAnalysisResultsResponse:
        with GatewayClient(gateway.address, api_key=gateway.admin_key) as client:
            return client.results(analysis_id)

    return await blocking(read)


async def create(
    gateway: GatewayProcess, records: Sequence[ConversationRecord], seed: int, request_id: str
) -> str:
    def call() -> str:
        with GatewayClient(gateway.address, api_key=gateway.admin_key) as client:
            return client.create(records, build_options(seed=seed), request_id=request_id).id

    return await blocking(call)


def events(process: GatewayProcess, event: str, analysis_id: str) -> list[dict[str, Any]]:
    return [line for line in process.events(event) if line.get("analysis_id") == analysis_id]


def outcome(response: gateway_pb2.GetAnalysisResultsResponse) -> tuple[object, ...]:
    """What a run computed: the tree and every conversation's cluster, facets and map point."""
    clusters = [
        (c.cluster.id, c.cluster.level, c.cluster.parent_id, c.cluster.name, c.cluster.size)
        for c in response.clusters
    ]
    rows = sorted(
        (
            row.conversation_id,
            row.cluster_id,
            row.withheld,
            tuple(sorted((v.facet, v.text, v.number) for v in row.facets)),
            (round(row.point.x, 5), round(row.point.y, 5)) if row.HasField("point") else None,
        )
        for row in response.conversations
    )
    return response.k, response.withheld_conversations, clusters, rows


async def test_two_gateways_on_one_database_run_each_analysis_exactly_once(
    gateways: Gateways, store: Store
) -> None:
    settings = {
        "max_concurrent_analyses": 1,
        "batch_size": 8,
        "analysis_lease_seconds": 10,
        "analysis_heartbeat_seconds": 0.3,
    }
    first, second = gateways.make("first", **settings), gateways.make("second", **settings)
    # Two analyses wait in the store before the gateways start: both find them at startup.
    waiting = {f"waiting-{i}": generated(20 + 4 * i, 100 + i) for i in range(2)}
    for analysis_id, records in waiting.items():
        conversations = conversations_from_pb([to_proto(r) for r in records])
        create_it = partial(
            store.create_analysis,
            analysis_id,
            request_id="",
            options=AnalysisOptions(seed=SEED),
            batch_size=8,
            conversations=conversations,
        )
        await blocking(create_it)
    clustering_calls = server_calls(CLUSTERING, "StreamClusterEmbeddings")
    await asyncio.gather(blocking(first.start), blocking(second.start))

    submitted = {**waiting}
    ids = list(waiting)
    for i in range(6):
        records = generated(16 + 2 * i, 200 + i)
        gateway = (first, second)[i % 2]
        analysis_id = await create(gateway, records, SEED, f"both-{i}")
        submitted[analysis_id] = records
        ids.append(analysis_id)

    for analysis_id in ids:
        final = await finished(first, analysis_id)
        assert final.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, final.error
        check_complete_results(await results(second, analysis_id), submitted[analysis_id])

    ran: dict[str, list[str]] = {}
    for analysis_id in ids:
        lease = await blocking(store.lease_of, analysis_id)
        assert lease is not None and lease[2] == 1, f"{analysis_id} claimed {lease} times"
        claimed = [
            p.log.parent.name for p in (first, second) for _ in events(p, "analysis_claimed", analysis_id)
        ]
        running = [p for p in (first, second) for _ in events(p, "analysis_running", analysis_id)]
        assert len(claimed) == 1 and len(running) == 1, (analysis_id, claimed, len(running))
        ran.setdefault(claimed[0], []).append(analysis_id)
    assert server_calls(CLUSTERING, "StreamClusterEmbeddings") == clustering_calls + len(ids)
    assert set(ran) == {"first", "second"}, f"one gateway ran everything: {ran}"
    assert await asyncio.gather(blocking(first.stop), blocking(second.stop)) == [0, 0]


async def db_lease(store: Store, analysis_id: str) -> tuple[datetime, str | None]:
    """(the database's now, the lease's owner), read together."""

    def read() -> tuple[datetime, str | None]:
        with store.engine.connect() as conn:
            row = conn.execute(
                text("SELECT now(), owner FROM analysis_leases WHERE analysis_id = :id"), {"id": analysis_id}
            ).one()
        return row[0], row[1]

    return await blocking(read)


async def settled(read: Callable[[], T]) -> T:
    """``read()`` once two reads 0.5 s apart agree (calls of a killed client still being wound up)."""
    last = read()
    while True:
        await asyncio.sleep(0.5)
        now = read()
        if now == last:
            return now
        last = now


async def wait_for(probe: Callable[[], T], what: str, limit: float = 120.0) -> T:
    """The first truthy ``probe()`` (a blocking call, made off the loop), polled every 0.05 s."""
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        value = await blocking(probe)
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_a_killed_gateways_analysis_is_resumed_by_another_after_its_lease_expires(
    gateways: Gateways, store: Store
) -> None:
    """Two gateways run; the one that claimed the analysis is SIGKILLed mid-batches. The other one takes
    the analysis over once the lease has run out, not before, and finishes it from the checkpoints."""
    settings = {
        "batch_size": 2,
        "max_inflight_batches": 1,
        "analysis_lease_seconds": 3,
        "analysis_heartbeat_seconds": 0.3,
    }
    records = generated(40, 7)
    batches = math.ceil(len(records) / 2)
    pair = gateways.make("a", **settings), gateways.make("b", **settings)
    await asyncio.gather(*(blocking(gateway.start) for gateway in pair))
    analysis_id = await create(pair[0], records, SEED, "crash-me")
    await wait_for(lambda: len(store.done_batches(analysis_id)[Stage.FACETS]) >= 3, "three batches done")
    claimed = await blocking(store.lease_of, analysis_id)
    assert claimed is not None and claimed[0] is not None and claimed[2] == 1, claimed
    owner = claimed[0]
    (doomed,) = [g for g in pair if g.process is not None and g.process.pid == int(owner.split(":")[-2])]
    (heir,) = [g for g in pair if g is not doomed]
    await blocking(doomed.kill)
    done = await blocking(store.done_batches, analysis_id)
    left = await blocking(store.lease_of, analysis_id)
    assert left is not None and left[0] == owner and left[1] is not None
    expires = left[1]
    assert 0 < len(done[Stage.FACETS]) < batches and len(done[Stage.EMBED]) < batches, done
    assert not done[Stage.CLUSTER]
    calls = await settled(
        lambda: tuple(
            server_calls(service, method)
            for service, method in (
                (FACETS, "ExtractFacets"),
                (EMBEDDING, "EmbedTexts"),
                (CLUSTERING, "StreamClusterEmbeddings"),
            )
        )
    )

    # Until the dead gateway's lease has run out (by the database's clock), it stays the dead one's.
    watched = 0
    while True:
        now, holder = await db_lease(store, analysis_id)
        if holder != owner:
            break
        watched += 1
        await asyncio.sleep(0.1)
    assert watched and now >= expires, f"taken over at {now}, before the lease ran out at {expires}"
    final = await finished(heir, analysis_id)
    assert final.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, final.error
    resumed = await results(heir, analysis_id)
    check_complete_results(resumed, records)

    # Claimed twice (the dead gateway, then the heir, attempt 2), resumed from the checkpoints: only the
    # batches without one were sent again, and clustering once.
    lease = await blocking(store.lease_of, analysis_id)
    assert lease is not None and lease[2] == 2
    assert [line["attempt"] for line in events(heir, "analysis_claimed", analysis_id)] == [2]
    (note,) = events(heir, "analysis_resumed", analysis_id)
    assert note["batches_done"] == len(done[Stage.FACETS] & done[Stage.EMBED])
    assert server_calls(FACETS, "ExtractFacets") - calls[0] == batches - len(done[Stage.FACETS])
    assert server_calls(EMBEDDING, "EmbedTexts") - calls[1] == batches - len(done[Stage.EMBED])
    assert server_calls(CLUSTERING, "StreamClusterEmbeddings") - calls[2] == 1

    # The same conversations and seed without a fault: the same results.
    clean_id = await create(heir, records, SEED, "no-fault")
    clean = await finished(heir, clean_id)
    assert clean.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, clean.error
    assert outcome(resumed) == outcome(await results(heir, clean_id))
    assert await blocking(heir.stop) == 0
