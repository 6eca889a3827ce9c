"""Services that tests start in-process with the shared bootstrap: their settings and health."""

from __future__ import annotations

from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from briefxai_common.config import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)

# 127.0.0.1, ports the OS picks (RunningService has the real ones), a short grace period on stop.
LOCAL: dict[str, Any] = {"host": "127.0.0.1", "grpc_port": 0, "http_port": 0, "grace_period_seconds": 1}


def local_settings(settings: type[S], **values: Any) -> S:
    """``settings.load`` with :data:`LOCAL` and then ``values`` over the configured section."""
    return settings.load(**{**LOCAL, **values})


async def assert_serving(address: str, *services: str) -> None:
    """The gRPC health service at ``address`` says SERVING overall ("") and for each of ``services``."""
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", *services):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
