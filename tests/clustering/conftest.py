"""Fixtures for the clustering tests: one clustering service over real sockets per test, and its stub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, TypeAlias, cast

import grpc
import pytest

from briefxai.clustering.v1 import clustering_pb2_grpc
from briefxai_common.bootstrap import RunningService
from tests.clustering.service_helpers import service_settings, started

if TYPE_CHECKING:
    Stub: TypeAlias = clustering_pb2_grpc.ClusteringServiceAsyncStub


@pytest.fixture
async def running() -> AsyncIterator[RunningService]:
    service = await started(service_settings())
    yield service
    await service.stop(grace=0)


@pytest.fixture
async def stub(running: RunningService) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(running.address) as channel:
        yield cast("Stub", clustering_pb2_grpc.ClusteringServiceStub(channel))
