"""End-to-end fixtures: the four services as REAL processes started by the CLI's supervisor.

Each test module gets its own suite on free ports with a temporary data dir (SQLite store and logs
inside it); teardown stops it with SIGTERM and checks every service exited cleanly.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from briefxai.gateway.v1 import gateway_pb2_grpc
from briefxai_cli.client import GatewayClient
from briefxai_cli.supervisor import Suite, plan_suite

START_TIMEOUT = 600.0


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    data_dir = tmp_path_factory.mktemp("briefxai-suite")
    running = Suite(plan_suite(data_dir, base_port=0))
    running.start(timeout=START_TIMEOUT)
    yield running
    codes = running.stop()
    assert codes == {name: 0 for name in codes}, f"services did not stop cleanly: {codes}"


@pytest.fixture(scope="module")
def client(suite: Suite) -> Iterator[GatewayClient]:
    with GatewayClient(suite.gateway_address, api_key=suite.admin_key) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def stub(client: GatewayClient) -> gateway_pb2_grpc.AnalysisServiceStub:
    return client.stub
