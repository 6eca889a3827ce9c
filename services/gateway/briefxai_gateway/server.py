"""Builds the gateway for the shared bootstrap: store, downstream clients, manager, servicer.

``start`` (port bound, health NOT_SERVING) runs the store migrations, opens the downstream channels
and resumes unfinished analyses; ``stop`` (after the server drained) stops the pipelines, leaving
their analyses to be resumed by the next start, and closes channels and the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from briefxai.gateway.v1 import gateway_pb2_grpc
from briefxai_common.bootstrap import Service
from briefxai_common.errors import Unavailable

from .clients import GrpcDownstreams
from .manager import AnalysisManager
from .servicer import SERVICE_NAME, AnalysisServicer
from .settings import GatewaySettings
from .store import Store


class Gateway:
    """The gateway's parts, created in ``start`` (inside the event loop) and closed in ``stop``."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.store: Store | None = None
        self.downstreams: GrpcDownstreams | None = None
        self._manager: AnalysisManager | None = None

    @property
    def manager(self) -> AnalysisManager:
        if self._manager is None:
            raise Unavailable("the gateway is starting", reason="STARTING")
        return self._manager

    async def start(self) -> None:
        self.store = Store(self.settings.store_url, self.settings.tenant_id)
        self.downstreams = GrpcDownstreams(self.settings)
        manager = AnalysisManager(self.settings, self.store, self.downstreams.clients)
        await manager.start()
        self._manager = manager

    async def stop(self) -> None:
        if self._manager is not None:
            await self._manager.stop()
        if self.downstreams is not None:
            await self.downstreams.close()
        if self.store is not None:
            self.store.close()

    def health_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {}
        if self._manager is not None:
            info.update(self._manager.health_info())
        if self.downstreams is not None:
            info["downstream"] = {
                d.service: {"address": d.address, "circuit_breaker": d.breaker.snapshot()}
                for d in self.downstreams.all
            }
        return info


def build_gateway(settings: GatewaySettings) -> tuple[Service, Gateway]:
    """The service for the bootstrap and the gateway behind it (tests reach the store through it)."""
    gateway = Gateway(settings)
    servicer = AnalysisServicer(lambda: gateway.manager)

    def register(server: grpc.aio.Server) -> Sequence[str]:
        gateway_pb2_grpc.add_AnalysisServiceServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    service = Service(
        name="gateway",
        settings=settings,
        register=register,
        start=gateway.start,
        stop=gateway.stop,
        health_info=gateway.health_info,
    )
    return service, gateway


def build_service(settings: GatewaySettings) -> Service:
    return build_gateway(settings)[0]
