"""Crashes mid-analysis, end to end: the four services as processes under the supervisor, which restarts
what is SIGKILLed a few seconds later on the same ports.

- a worker (embedding) killed while the analysis embeds: the analysis waits for it and finishes;
- the gateway killed late in the embed stage, together with the clustering service: the new gateway
  resumes from the checkpoints, waits for clustering to be SERVING, and finishes;
- ``briefxai analyze`` keeps following its analysis across a gateway restart.

Each time the result is the one of a fault-free run of the same conversations with the same seed, every
conversation exactly once. The embedding cache is off and batches are small, so that the analysis is
still embedding when the kill comes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import briefxai_sampledata as sampledata
from briefxai.gateway.v1 import gateway_pb2
from briefxai_cli.client import GatewayClient, build_options
from briefxai_cli.inputs import ConversationRecord, read_conversations
from briefxai_cli.supervisor import RestartPolicy, Suite, plan_suite
from tests.e2e.checks import check_complete_results
from tests.e2e.support import briefxai_command

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]
START_TIMEOUT = 600.0
SEED = 11
COUNT = 300
ENV = {
    "BRIEFXAI_EMBEDDING_CACHE_MAX_MB": "0",
    "BRIEFXAI_GATEWAY_BATCH_SIZE": "20",
    "BRIEFXAI_GATEWAY_MAX_INFLIGHT_BATCHES": "2",
    # A killed gateway's lease runs out soon, so that its successor takes the analysis over quickly.
    "BRIEFXAI_GATEWAY_ANALYSIS_LEASE_SECONDS": "6",
    "BRIEFXAI_GATEWAY_ANALYSIS_HEARTBEAT_SECONDS": "2",
}
# A killed service is started again this long after it died.
RESTART_AFTER = 4.0
Outcome = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    running = Suite(plan_suite(tmp_path_factory.mktemp("briefxai-outages"), base_port=0), extra_env=ENV)
    running.start(timeout=START_TIMEOUT)
    running.supervise_in_background(RestartPolicy(initial_backoff=RESTART_AFTER, max_backoff=RESTART_AFTER))
    yield running
    codes = running.stop()
    assert running.failure is None, running.failure
    assert codes == {name: 0 for name in codes}, f"services did not stop cleanly: {codes}"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ConversationRecord]]:
    path = tmp_path_factory.mktemp("input") / "conversations.jsonl"
    sampledata.write(str(path), COUNT, SEED, "jsonl")
    read = read_conversations(path)
    assert not read.errors and len(read.records) == COUNT
    return path, read.records


def outcome(client: GatewayClient, analysis_id: str, records: list[ConversationRecord]) -> Outcome:
    """The results, each conversation once (checked), comparable across runs."""
    results = client.results(analysis_id)
    check_complete_results(results, records)
    rows = [
        (r.conversation_id, r.cluster_id, r.withheld, round(r.point.x, 5), round(r.point.y, 5))
        for r in results.conversations
    ]
    clusters = [(c.cluster.id, c.cluster.name, c.cluster.size, c.cluster.parent_id) for c in results.clusters]
    return sorted(rows), sorted(clusters)


@pytest.fixture(scope="module")
def fault_free(suite: Suite, sample: tuple[Path, list[ConversationRecord]]) -> Outcome:
    with GatewayClient(suite.gateway_address, api_key=suite.admin_key) as client:
        analysis = client.create(sample[1], build_options(seed=SEED))
        final = client.wait(analysis.id)
        assert final.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, final.error.message
        return outcome(client, analysis.id, sample[1])


def embedded(update: gateway_pb2.WatchAnalysisResponse) -> int:
    return next((s.done for s in update.analysis.stages if s.stage == gateway_pb2.STAGE_EMBED), 0)


def kill(suite: Suite, *instances: str) -> None:
    pids = suite.pids()
    for instance in instances:
        os.kill(pids[instance], signal.SIGKILL)


def follow_until(
    client: GatewayClient, analysis_id: str, predicate: Callable[[gateway_pb2.WatchAnalysisResponse], bool]
) -> gateway_pb2.WatchAnalysisResponse:
    for update in client.watch(analysis_id):
        if predicate(update):
            return update
    raise AssertionError(f"analysis {analysis_id} ended before the awaited progress")


def test_a_killed_worker_is_waited_for(
    suite: Suite, sample: tuple[Path, list[ConversationRecord]], fault_free: Outcome
) -> None:
    records = sample[1]
    with GatewayClient(suite.gateway_address, api_key=suite.admin_key) as client:
        analysis = client.create(records, build_options(seed=SEED))
        follow_until(client, analysis.id, lambda u: embedded(u) >= 40)
        kill(suite, "embedding")
        notes: set[str] = set()
        final = client.wait(analysis.id, lambda u: notes.update(u.analysis.warnings))
        assert final.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, final.error.message
        assert any(note.startswith("waiting for the embedding service") for note in notes), notes
        assert outcome(client, analysis.id, records) == fault_free
    assert suite.restarts["embedding"] >= 1


def test_a_killed_gateway_resumes_and_waits_for_clustering(
    suite: Suite, sample: tuple[Path, list[ConversationRecord]], fault_free: Outcome
) -> None:
    records = sample[1]
    with GatewayClient(suite.gateway_address, api_key=suite.admin_key) as client:
        analysis = client.create(records, build_options(seed=SEED))
        follow_until(client, analysis.id, lambda u: embedded(u) >= COUNT // 2)
        kill(suite, "gateway", "clustering")
        # The new gateway (started while clustering compiles its map code) resumes the analysis.
        final = client.wait(analysis.id)
        assert final.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, final.error.message
        assert outcome(client, analysis.id, records) == fault_free
    log = suite.log_path("gateway").read_text()
    assert '"event": "analysis_resumed"' in log


def test_analyze_keeps_watching_across_a_gateway_restart(
    suite: Suite, sample: tuple[Path, list[ConversationRecord]], fault_free: Outcome, tmp_path: Path
) -> None:
    path, records = sample
    command = [*briefxai_command(), "analyze", str(path), "--seed", str(SEED), "--out", str(tmp_path)]
    command += ["--gateway", suite.gateway_address]
    env = dict(os.environ, COLUMNS="200", GRPC_VERBOSITY="ERROR", BRIEFXAI_API_KEY=suite.admin_key)
    cli = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        with GatewayClient(suite.gateway_address, api_key=suite.admin_key) as client:
            deadline = time.monotonic() + 300
            running = None
            while running is None and time.monotonic() < deadline:
                running = next(
                    (a for a in client.list(limit=1) if a.state == gateway_pb2.ANALYSIS_STATE_RUNNING), None
                )
                time.sleep(0.2)
            assert running is not None, "the CLI's analysis never ran"
            follow_until(client, running.id, lambda u: embedded(u) >= 40)
            kill(suite, "gateway")
            out, err = cli.communicate(timeout=900)
            assert cli.returncode == 0, err
            assert "lost the gateway" in err
            assert f"analysis {running.id} SUCCEEDED" in out
            assert outcome(client, running.id, records) == fault_free
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
