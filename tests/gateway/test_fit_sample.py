"""An analysis larger than the clustering service takes in one job (its ``max_vectors``) through a real
gateway and a real clustering service configured with ``max_vectors=200``: the base clusters are fitted
on a seeded sample of 200 of 600 conversations, every other one is assigned to its nearest base
centroid in streamed chunks, and the tree is counted over all 600."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator

import numpy as np
import pytest
import pytest_asyncio

from briefxai.gateway.v1 import gateway_pb2
from briefxai_clustering.server import build_service as build_clustering
from briefxai_clustering.settings import ClusteringSettings
from briefxai_common.bootstrap import RunningService, start_service
from briefxai_gateway import pipeline
from briefxai_gateway.centroids import unit_rows

from .conftest import LOCAL, GatewayFactory, GatewayHandle, conversations
from .test_service import all_results

pytestmark = pytest.mark.asyncio(loop_scope="session")

COUNT = 600
SAMPLE = 200
MIN_SIZE = 5
MIN_USERS = 3


@pytest_asyncio.fixture(loop_scope="session")
async def small_clustering() -> AsyncIterator[RunningService]:
    """A clustering service that takes at most ``SAMPLE`` vectors per job (its map: PCA, no UMAP JIT)."""
    settings = ClusteringSettings.load(
        **LOCAL, warm_up_map=False, compute_threads=1, max_vectors=SAMPLE, umap_min_points=1000
    )
    running = await start_service(build_clustering(settings))
    yield running
    await running.stop(grace=0)


async def analyse(gw: GatewayHandle, seed: int) -> str:
    request = gateway_pb2.CreateAnalysisRequest(
        conversations=conversations(COUNT),
        options=gateway_pb2.AnalysisOptions(
            seed=seed, min_cluster_size=MIN_SIZE, min_distinct_users=MIN_USERS
        ),
    )
    created = (await gw.stub.CreateAnalysis(request)).analysis
    final = (await gw.wait(created.id, limit=300.0))[-1].analysis
    assert final.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, final.error.message
    return created.id


async def test_a_sampled_analysis_assigns_every_conversation_and_counts_the_whole_tree(
    start_gateway: GatewayFactory, small_clustering: RunningService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chunks of 64 ordinals: every pass over the stored vectors takes several steps, unaligned with the
    # embedding batches of 48.
    monkeypatch.setattr(pipeline, "CLUSTER_CHUNK_VECTORS", 64)
    gw = await start_gateway(clustering_address=small_clustering.address, batch_size=48)
    analysis_id = await analyse(gw, seed=5)
    pages = await all_results(gw, analysis_id, page_size=250)
    first = pages[0]
    rows = [r for page in pages for r in page.conversations]
    users = {c.id: c.user_id for c in conversations(COUNT)}

    # Every conversation exactly once: in one base cluster, or withheld.
    assert sorted(r.conversation_id for r in rows) == sorted(users)
    assert all(bool(r.cluster_id) != r.withheld for r in rows)
    assert first.total_conversations == COUNT
    assert first.withheld_conversations == sum(r.withheld for r in rows)
    assert f"fitted on a seeded sample of {SAMPLE} of {COUNT} conversations" in first.k_rule

    # The sample is the seeded one; the map holds its reported conversations only.
    ids = [c.id for c in conversations(COUNT)]
    sample = {ids[o] for o in pipeline.fit_sample(COUNT, SAMPLE, 5).tolist()}
    withheld = {r.conversation_id for r in rows if r.withheld}
    mapped = {r.conversation_id for r in rows if r.HasField("point")}
    assert mapped == sample - withheld
    assert mapped

    # Sizes and distinct users over all 600, at every level, and the privacy thresholds over them.
    clusters = {c.cluster.id: c.cluster for c in first.clusters}
    members: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        node = clusters.get(r.cluster_id)
        while node is not None:
            members[node.id].add(r.conversation_id)
            node = clusters.get(node.parent_id)
    assert set(members) == set(clusters)
    for cluster in clusters.values():
        assert cluster.size == len(members[cluster.id])
        assert cluster.distinct_users == len({users[c] for c in members[cluster.id]})
        assert cluster.size >= MIN_SIZE and cluster.distinct_users >= MIN_USERS
        if cluster.child_ids:
            assert cluster.size == sum(clusters[child].size for child in cluster.child_ids)
    for level in {c.level for c in clusters.values()}:
        assert (
            sum(c.size for c in clusters.values() if c.level == level) == COUNT - first.withheld_conversations
        )

    # Each conversation outside the sample is in the base cluster whose centroid (its sampled members'
    # normalised mean) is nearest.
    ordinal = {cid: i for i, cid in enumerate(ids)}
    vectors = unit_rows(gw.store.load_vector_range(analysis_id, 0, COUNT))
    base = sorted(c.id for c in clusters.values() if c.level == 0)
    sums = np.zeros((len(base), vectors.shape[1]))
    for r in rows:
        if r.conversation_id in mapped:
            sums[base.index(r.cluster_id)] += vectors[ordinal[r.conversation_id]]
    centroids = sums / np.linalg.norm(sums, axis=1, keepdims=True)
    rest = [r for r in rows if r.conversation_id not in sample]
    assert len(rest) == COUNT - SAMPLE
    nearest = np.argmax(vectors[[ordinal[r.conversation_id] for r in rest]] @ centroids.T, axis=1)
    assert [base[i] for i in nearest] == [r.cluster_id for r in rest]

    # New conversations go into it as into any analysis, against centroids over all 600 members.
    added = await gw.stub.AssignConversations(
        gateway_pb2.AssignConversationsRequest(id=analysis_id, conversations=conversations(12, start=COUNT))
    )
    assert added.revision == 1
    assert [a.conversation_id for a in added.assignments] == [c.id for c in conversations(12, start=COUNT)]
    assert added.assigned_count + added.unassigned_count == 12
    assert all(a.cluster_id in clusters for a in added.assignments if not a.unassigned)


async def test_the_same_seed_gives_the_same_sampled_result(
    start_gateway: GatewayFactory, small_clustering: RunningService
) -> None:
    gw = await start_gateway(clustering_address=small_clustering.address, batch_size=64)

    async def result(
        seed: int,
    ) -> tuple[list[tuple[str, str, bool, float, float]], list[tuple[str, int, int]]]:
        pages = await all_results(gw, await analyse(gw, seed), page_size=1000)
        rows = [
            (r.conversation_id, r.cluster_id, r.withheld, r.point.x, r.point.y)
            for page in pages
            for r in page.conversations
        ]
        return rows, [(c.cluster.id, c.cluster.size, c.cluster.distinct_users) for c in pages[0].clusters]

    once, again = await result(3), await result(3)
    assert once == again
    assert len(once[0]) == COUNT
