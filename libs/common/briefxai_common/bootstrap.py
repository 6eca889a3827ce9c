"""The one function that builds, runs and drains every BriefXAI gRPC server.

After grpc's ``examples/python``: servicers, health and reflection are added in one place, metrics
and tracing interceptors are always on, and shutdown is graceful (health NOT_SERVING, stop taking
calls, let in-flight ones finish within the grace period).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from briefxai_common import metrics, tracing
from briefxai_common.config import ConfigError, ServiceSettings
from briefxai_common.http import HttpSidePort
from briefxai_common.interceptors import ErrorMappingInterceptor
from briefxai_common.logging import configure_logging, get_logger
from briefxai_common.reflection import enable_reflection

log = get_logger(__name__)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


@dataclass
class Service:
    """What a service hands the bootstrap."""

    name: str
    settings: ServiceSettings
    register: Callable[[grpc.aio.Server], Sequence[str]]
    start: Callable[[], Awaitable[None]] | None = None
    stop: Callable[[], Awaitable[None]] | None = None
    health_info: Callable[[], dict[str, Any]] | None = None


def server_options(settings: ServiceSettings) -> list[tuple[str, Any]]:
    limit = settings.max_message_mb * 1024 * 1024
    return [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.so_reuseport", 0),
    ]


class RunningService:
    """A started server: its ports, health, and a graceful ``stop``."""

    def __init__(
        self,
        service: Service,
        server: grpc.aio.Server,
        health_servicer: health.aio.HealthServicer,
        service_names: Sequence[str],
        grpc_port: int,
        http: HttpSidePort,
    ) -> None:
        self.service = service
        self.server = server
        self.health = health_servicer
        self.service_names = list(service_names)
        self.grpc_port = grpc_port
        self.http = http
        self.serving = False
        self._stopped = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_port(self) -> int:
        return self.http.port

    async def set_serving(self, serving: bool) -> None:
        status = SERVING if serving else NOT_SERVING
        for name in ("", *self.service_names):
            await self.health.set(name, status)
        self.serving = serving

    async def stop(self, grace: float | None = None) -> None:
        """Health NOT_SERVING, refuse new calls, wait up to ``grace`` seconds for in-flight ones."""
        if self._stopped:
            return
        self._stopped = True
        grace = self.service.settings.grace_period_seconds if grace is None else grace
        log.info("draining", service=self.service.name, grace_seconds=grace)
        self.serving = False
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.service.stop is not None:
            await self.service.stop()
        await self.http.stop()
        log.info("stopped", service=self.service.name)

    async def wait_for_termination(self) -> None:
        await self.server.wait_for_termination()


async def start_service(service: Service) -> RunningService:
    """Binds the gRPC and HTTP ports, serves NOT_SERVING while ``service.start`` runs, then SERVING."""
    settings = service.settings
    server = grpc.aio.server(
        interceptors=[
            tracing.server_interceptor(),
            metrics.server_interceptor(metrics.default_metrics()),
            ErrorMappingInterceptor(),
        ],
        options=server_options(settings),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    names = list(service.register(server))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection([*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name], server)
    grpc_port = server.add_insecure_port(f"{settings.host}:{settings.grpc_port}")
    if grpc_port == 0:
        raise OSError(f"cannot bind gRPC port {settings.host}:{settings.grpc_port}")

    running: RunningService | None = None
    http = HttpSidePort(
        service.name,
        status=lambda: "SERVING" if running is not None and running.serving else "NOT_SERVING",
        info=service.health_info,
    )
    running = RunningService(service, server, health_servicer, names, grpc_port, http)
    await running.set_serving(False)
    await server.start()
    await http.start(settings.host, settings.http_port)
    log.info("starting", service=service.name, grpc_port=grpc_port, http_port=http.port)
    try:
        if service.start is not None:
            await service.start()
    except BaseException:
        await running.stop(grace=0)
        raise
    await running.set_serving(True)
    log.info("serving", service=service.name, grpc_port=grpc_port, http_port=http.port)
    return running


def run_service(service: Service) -> None:
    """Process entry point: configures logs and traces, serves until SIGTERM/SIGINT, drains, exits."""
    settings = service.settings
    configure_logging(service.name, settings.log_level, settings.log_format)
    tracing.configure_tracing(service.name, settings.otlp_endpoint)
    try:
        asyncio.run(_serve_until_signal(service))
    finally:
        tracing.shutdown_tracing()


async def _serve_until_signal(service: Service) -> None:
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    starting = asyncio.create_task(start_service(service))
    waiting = asyncio.create_task(stop_requested.wait())
    done, _ = await asyncio.wait({starting, waiting}, return_when=asyncio.FIRST_COMPLETED)
    if starting not in done:
        starting.cancel()
        log.info("stopped_before_ready", service=service.name)
        return
    waiting_done = waiting in done
    running = starting.result()
    if not waiting_done:
        await waiting
    await running.stop()


def serve_main(name: str, settings_class: type[SettingsT], build: Callable[[SettingsT], Service]) -> int:
    """What every ``python -m briefxai_<name>`` runs: load settings, build, serve; exit 2 on bad config."""
    try:
        service = build(settings_class.load())
    except ConfigError as error:
        print(f"briefxai-{name}: {error}", file=sys.stderr)
        return 2
    run_service(service)
    return 0
