"""Same conversations, same seed, different batching: the same partition, end to end.

One suite with the embedding cache off (so every analysis computes its vectors again) and a second
gateway process with a small batch size in front of the same embedding, facets and clustering
services. The subject conversations are analysed first alone through the default gateway (batches of
256), then through the small-batch gateway while the default gateway analyses other conversations at
the same moment, so that the embedding service merges the two analyses' texts into shared model
passes. Every vector must be the same whatever its batch mates, and so must the partition.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from benchmarks.common import conversation_records
from benchmarks.dev_data import DevSetUnavailable, as_records, load_dev_set
from briefxai.gateway.v1 import gateway_pb2
from briefxai_cli import evaluation
from briefxai_cli.client import GatewayClient, build_options, to_json
from briefxai_cli.inputs import ConversationRecord, read_conversations
from briefxai_cli.supervisor import Suite, SuitePlan, plan_suite
from tests.e2e.checks import check_complete_results
from tests.e2e.support import SAMPLE

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]
SEED = 13
START_TIMEOUT = 600.0
SUBJECT = 300
CACHE_OFF = {"BRIEFXAI_EMBEDDING_CACHE_MAX_MB": "0"}
# Not a divisor of SUBJECT, and far from the default 256: other batch boundaries, other batch mates.
SMALL_BATCH = {"BRIEFXAI_GATEWAY_BATCH_SIZE": "40", "BRIEFXAI_GATEWAY_MAX_INFLIGHT_BATCHES": "2"}


def conversations() -> tuple[str, list[ConversationRecord], list[ConversationRecord]]:
    """(source, subject, background): real dev chats when the dev set can be built, else the bundled
    sample as subject and generated conversations (other texts) as background."""
    try:
        dev = as_records(load_dev_set(2 * SUBJECT))
    except DevSetUnavailable:
        sample = read_conversations(SAMPLE)
        assert not sample.errors
        return "bundled sample", sample.records[:SUBJECT], conversation_records(SUBJECT, seed=SEED)
    assert len(dev) == 2 * SUBJECT
    return "real dev chats", dev[:SUBJECT], dev[SUBJECT:]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    """This module's suite: the conftest's, started with the embedding cache off."""
    data_dir = tmp_path_factory.mktemp("briefxai-determinism")
    running = Suite(plan_suite(data_dir, base_port=0), extra_env=CACHE_OFF)
    running.start(timeout=START_TIMEOUT)
    yield running
    codes = running.stop()
    assert codes == {name: 0 for name in codes}, f"services did not stop cleanly: {codes}"


@pytest.fixture(scope="module")
def small_batch_gateway(suite: Suite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    """A second gateway process (its own store) in front of the suite's three other services."""
    own = plan_suite(tmp_path_factory.mktemp("briefxai-gateway-small-batch"), base_port=0)
    env = dict(own.service("gateway").env, **SMALL_BATCH)
    for name in ("embedding", "facets", "clustering"):
        env[f"BRIEFXAI_GATEWAY_{name.upper()}_ADDRESS"] = suite.plan.service(name).address
    plan = SuitePlan((replace(own.service("gateway"), env=env),), own.data_dir, own.store_url)
    # The suite's workers accept the gateway that holds their service token only.
    running = Suite(plan, extra_env={"BRIEFXAI_GATEWAY_SERVICE_TOKEN": suite.service_token})
    running.start(timeout=START_TIMEOUT, check_ports=False)
    yield running
    codes = running.stop()
    assert codes == {"gateway": 0}, f"the second gateway did not stop cleanly: {codes}"


def analyse(
    client: GatewayClient, records: list[ConversationRecord]
) -> gateway_pb2.GetAnalysisResultsResponse:
    analysis = client.create(records, build_options(seed=SEED), stream=True)
    final = client.wait(analysis.id)
    assert final.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, final.error
    results = client.results(final.id)
    check_complete_results(results, records)
    return results


def test_other_batch_size_and_batch_mates_give_the_same_partition(
    client: GatewayClient, small_batch_gateway: Suite
) -> None:
    source, subject, background = conversations()
    alone = analyse(client, subject)

    with (
        GatewayClient(small_batch_gateway.gateway_address, api_key=small_batch_gateway.admin_key) as small,
        ThreadPoolExecutor(max_workers=2) as pool,
    ):
        mixed = pool.submit(analyse, small, subject)
        other = pool.submit(analyse, client, background)
        together = mixed.result()
        other.result()

    first, second = evaluation.from_results(to_json(alone)), evaluation.from_results(to_json(together))
    comparison = evaluation.compare_runs(first, second)
    assert comparison.ari_by_level, f"{source}: no levels to compare"
    assert comparison.ari_by_level[min(comparison.ari_by_level)] == pytest.approx(1.0), (source, comparison)
    assert comparison.identical, (source, comparison)
    by_conversation = {row.conversation_id: row.cluster_id for row in alone.conversations}
    changed = sorted(
        (row.conversation_id, by_conversation[row.conversation_id], row.cluster_id)
        for row in together.conversations
        if by_conversation[row.conversation_id] != row.cluster_id
    )
    assert not changed, f"{source}: {len(changed)} conversations in another cluster, e.g. {changed[:5]}"
    assert (alone.k, alone.withheld_conversations) == (together.k, together.withheld_conversations)
