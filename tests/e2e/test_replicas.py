"""Local replicas: the supervisor runs two embedding and two facets replicas, the gateway round-robins
over them (``ipv4:`` list targets), and a replica killed mid-analysis neither fails the analysis nor
keeps taking calls; the supervisor starts it again and it rejoins the rotation.

The gateway sends batches of 25 conversations here (``BRIEFXAI_GATEWAY_BATCH_SIZE``), so a few hundred
conversations make enough calls to reach every replica.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from briefxai.gateway.v1 import gateway_pb2
from briefxai_cli.client import GatewayClient, build_options
from briefxai_cli.inputs import ConversationRecord
from briefxai_cli.supervisor import RestartPolicy, Suite, plan_suite
from tests.e2e.checks import check_complete_results
from tests.e2e.conftest import START_TIMEOUT
from tests.e2e.support import generated
from tests.support.http import http_get

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
REPLICAS = {"embedding": 2, "facets": 2}
BATCH = 25
EMBED = ("briefxai.embedding.v1.EmbeddingService", "EmbedTexts")
EXTRACT = ("briefxai.facets.v1.FacetsService", "ExtractFacets")


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    plan = plan_suite(tmp_path_factory.mktemp("briefxai-replicas"), base_port=0, replicas=REPLICAS)
    running = Suite(plan, extra_env={"BRIEFXAI_GATEWAY_BATCH_SIZE": str(BATCH)})
    running.start(timeout=START_TIMEOUT)
    running.supervise_in_background(RestartPolicy(initial_backoff=0.5))
    yield running
    codes = running.stop()
    assert codes == {name: 0 for name in codes}, f"services did not stop cleanly: {codes}"
    assert running.failure is None


@pytest.fixture(scope="module")
def client(replicated: Suite) -> Iterator[GatewayClient]:
    with GatewayClient(replicated.gateway_address, api_key=replicated.admin_key) as gateway:
        yield gateway


def counter(http_port: int, name: str, method: tuple[str, str], code: str | None = "OK") -> float:
    """The sum of ``name``'s samples for ``method`` (and ``grpc_code``, unless None) on a /metrics page."""
    status, body = http_get(http_port, "/metrics")
    assert status == 200
    total = 0.0
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == name
                and (labels.get("grpc_service"), labels.get("grpc_method")) == method
                and (code is None or labels.get("grpc_code") == code)
            ):
                total += sample.value
    return total


def handled(suite: Suite, instance: str, method: tuple[str, str]) -> float:
    """Calls of ``method`` the instance answered OK (its own server metrics)."""
    return counter(suite.plan.service(instance).http_port, "grpc_server_handled_total", method)


def analyse(client: GatewayClient, records: list[ConversationRecord], seed: int) -> None:
    analysis = client.create(records, build_options(seed=seed), stream=True)
    final = client.wait(analysis.id)
    assert final.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, final.error
    check_complete_results(client.results(final.id), records)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not {what} after {timeout:g}s"
        time.sleep(0.1)


def test_the_gateway_gets_a_list_target_and_calls_reach_every_replica(
    replicated: Suite, client: GatewayClient
) -> None:
    gateway_env = replicated.plan.service("gateway").env
    for name in REPLICAS:
        addresses = ",".join(s.address for s in replicated.plan.replicas(name))
        assert gateway_env[f"BRIEFXAI_GATEWAY_{name.upper()}_ADDRESS"] == f"ipv4:{addresses}"
    targets = [("embedding-1", EMBED), ("embedding-2", EMBED), ("facets-1", EXTRACT), ("facets-2", EXTRACT)]
    before = {(instance, method): handled(replicated, instance, method) for instance, method in targets}
    records = generated(300, seed=31)
    analyse(client, records, seed=3)
    calls = {key: handled(replicated, *key) - value for key, value in before.items()}
    assert all(count > 0 for count in calls.values()), calls
    batches = -(-len(records) // BATCH)
    assert calls[("embedding-1", EMBED)] + calls[("embedding-2", EMBED)] >= batches
    assert calls[("facets-1", EXTRACT)] + calls[("facets-2", EXTRACT)] >= batches


def test_a_replica_killed_mid_analysis_leaves_the_rotation_and_comes_back(
    replicated: Suite, client: GatewayClient
) -> None:
    gateway_http = replicated.plan.service("gateway").http_port
    client_failures = counter(gateway_http, "grpc_client_handled_total", EMBED, code="UNAVAILABLE")
    victim, survivor = "embedding-2", "embedding-1"
    victim_pid = replicated.pids()[victim]
    start_count = handled(replicated, victim, EMBED)

    records = generated(400, seed=41)
    analysis = client.create(records, build_options(seed=4), stream=True)
    wait_until(lambda: handled(replicated, victim, EMBED) > start_count, 120, f"{victim} embedding")
    os.kill(victim_pid, signal.SIGKILL)
    survivor_at_kill = handled(replicated, survivor, EMBED)
    final = client.wait(analysis.id)
    assert final.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, final.error
    check_complete_results(client.results(final.id), records)

    # The survivor took the rest; the dead address failed only the calls in flight on it when it died.
    assert handled(replicated, survivor, EMBED) > survivor_at_kill
    failed = counter(gateway_http, "grpc_client_handled_total", EMBED, code="UNAVAILABLE") - client_failures
    assert failed <= 2, f"{failed} EmbedTexts calls failed UNAVAILABLE (at most 2 are in flight per replica)"

    # The supervisor started it again; once SERVING it is back in the rotation.
    wait_until(lambda: replicated.restarts[victim] == 1, 60, f"{victim} restarted")
    assert replicated.pids()[victim] != victim_pid
    log = replicated.log_path(victim).read_text()
    assert f"--- supervisor: {victim} exited with signal SIGKILL" in log
    wait_until(
        lambda: f"{victim} is SERVING again" in replicated.log_path(victim).read_text(), 300, "serving"
    )
    analyse(client, generated(200, seed=43), seed=5)
    assert handled(replicated, victim, EMBED) > 0
