"""``GatewayClient.wait`` (what ``briefxai analyze`` follows an analysis with) survives a gateway restart:
the gateway process is SIGKILLed while an analysis runs and started again on the same port and store;
the client reconnects, says so once, and follows the analysis to its end."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from briefxai.gateway.v1 import gateway_pb2
from briefxai_cli.client import GatewayClient, build_options
from briefxai_cli.inputs import ConversationRecord, Message
from tests.support.gateway_process import GatewayProcess, until


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    running = GatewayProcess(tmp_path)
    yield running
    running.close()


def test_wait_reconnects_after_a_gateway_restart(gateway: GatewayProcess) -> None:
    # No downstream services: the analysis waits for them (RUNNING) until it is cancelled.
    gateway.start()
    records = [
        ConversationRecord(f"c{i}", "u", (Message("user", f"hello {i}"),), {}, i + 1) for i in range(3)
    ]
    messages: list[str] = []
    updates: list[int] = []
    final: list[gateway_pb2.Analysis] = []
    with GatewayClient(gateway.address, api_key=gateway.admin_key) as client:
        analysis = client.create(records, build_options(seed=1))

        def follow() -> None:
            final.append(
                client.wait(
                    analysis.id, lambda u: updates.append(u.analysis.state), on_reconnect=messages.append
                )
            )

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        until(lambda: updates, "the first update")
        gateway.kill()
        gateway.start()
        # wait_for_ready: the process's channels share the connection the old gateway refused, which
        # stays failed until its reconnect backoff ends.
        request = gateway_pb2.CancelAnalysisRequest(id=analysis.id)
        cancelled = client.stub.CancelAnalysis(request, wait_for_ready=True, timeout=30).analysis
        assert cancelled.state == gateway_pb2.ANALYSIS_STATE_CANCELLED
        follower.join(timeout=60)
    assert final and final[0].state == gateway_pb2.ANALYSIS_STATE_CANCELLED
    assert len(messages) == 1 and messages[0].startswith(
        f"lost the gateway at {gateway.address} (UNAVAILABLE"
    )
