"""The one function that builds, runs and drains every BriefXAI gRPC server.

After grpc's ``examples/python``: servicers, health and reflection are added in one place, metrics
and tracing interceptors are always on, and shutdown is graceful (health NOT_SERVING, stop taking
calls, let in-flight ones finish within the grace period).

The HTTP side port's ``/health``, ``/readyz`` and ``/livez`` judge the service's own
:class:`~briefxai_common.health.HealthReport` (``Service.health_info``) with the server's phase
(starting, serving, draining, stopped) by the rules in ``health.py``. Open health ``Watch`` streams
(the gateway's) get NOT_SERVING and end when draining begins, so they do not hold the grace period.

With ``tls.cert_file``/``key_file`` both ports serve TLS (the gRPC port also requires client certificates
from ``tls.client_ca_file`` when set: mTLS); a worker (``Service.internal``) with a ``service_token``
refuses calls without it (``service_auth.py``); ``reflection_enabled: false`` leaves reflection out.

SIGHUP, or a change of the config file's content, reloads the settings (``reload.py``): logs and
feature flags change at once, the service's
``reload`` hook applies what else it can, the rest is logged as needing a restart; an invalid file
is rejected and the old settings stay. ``/health`` shows the feature flags in force (``features``).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import inspect
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
import watchfiles
import yaml
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc

from briefxai_common import metrics, tls, tracing
from briefxai_common.config import CONFIG_ENV, ConfigError, ServiceSettings
from briefxai_common.features import FeatureFlags
from briefxai_common.health import (
    DRAINING,
    SERVING_PHASE,
    STARTING,
    STOPPED,
    HealthMonitor,
    HealthReport,
    HealthSource,
)
from briefxai_common.http import HttpSidePort
from briefxai_common.interceptors import ErrorMappingInterceptor
from briefxai_common.logging import get_logger, mask_secrets
from briefxai_common.reflection import enable_reflection
from briefxai_common.reload import Reloader, ReloadHook, configure_service_logging
from briefxai_common.service_auth import ServiceTokenInterceptor

log = get_logger(__name__)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


@dataclass
class Service:
    """What a service hands the bootstrap."""

    name: str
    settings: ServiceSettings
    register: Callable[[grpc.aio.Server], Sequence[str]]
    start: Callable[[], Awaitable[None]] | None = None
    stop: Callable[[], Awaitable[None]] | None = None
    health_info: HealthSource | None = None
    # Extra routes of the HTTP side port (``aiohttp.web.get(path, handler)``, ...), next to /health,
    # /livez, /readyz and /metrics.
    http_routes: Sequence[web.AbstractRouteDef] = ()
    # The feature flags the service reads (None: it declares none; the configured ones are still shown).
    features: FeatureFlags | None = None
    # Applies reloaded settings it can change safely; see ``reload.py``.
    reload: ReloadHook | None = None
    # Server interceptors run after tracing and metrics, before error mapping (the gateway's
    # authentication): they see every call, and the metrics see the status they give.
    interceptors: Sequence[grpc.aio.ServerInterceptor] = ()
    # A worker (embedding, facets, clustering): only the gateway calls it, so it requires
    # ``settings.service_token`` (when set) of every call but health and reflection.
    internal: bool = False

    def __post_init__(self) -> None:
        if self.features is None:
            self.features = FeatureFlags((), self.settings.features)

    @property
    def flags(self) -> FeatureFlags:
        assert self.features is not None  # noqa: S101  invariant for mypy, not a check on input
        return self.features


def server_options(settings: ServiceSettings) -> list[tuple[str, Any]]:
    limit = settings.max_message_mb * 1024 * 1024
    return [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.so_reuseport", 0),
    ]


class _HealthServicer(health_pb2_grpc.HealthServicer):
    """grpc.health.v1 as grpc's own servicer serves it (NOT_FOUND for an unknown name in Check,
    SERVICE_UNKNOWN in Watch), except that a ``Watch`` stream ends after sending NOT_SERVING once the
    server drains: an open watch (the gateway's) would otherwise hold ``server.stop`` for its whole
    grace period. A slow watcher never holds the lock while its message is written."""

    def __init__(self) -> None:
        self._status: dict[str, int] = {"": SERVING}
        self._changed = asyncio.Condition()
        self._draining = False

    async def Check(self, request: health_pb2.HealthCheckRequest, context: Any) -> Any:
        status = self._status.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND)
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        last: int | None = None
        while True:
            async with self._changed:
                await self._changed.wait_for(functools.partial(self._news, request.service, last))
                status, draining = self._status.get(request.service, SERVICE_UNKNOWN), self._draining
            if status != last:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                last = status
            if draining:
                return

    def _news(self, service: str, last: int | None) -> bool:
        return self._draining or self._status.get(service, SERVICE_UNKNOWN) != last

    async def set(self, service: str, status: int) -> None:
        async with self._changed:
            if not self._draining:
                self._status[service] = status
                self._changed.notify_all()

    async def enter_graceful_shutdown(self) -> None:
        """Every status NOT_SERVING for good; watches send it and end."""
        async with self._changed:
            self._draining = True
            self._status = dict.fromkeys(self._status, NOT_SERVING)
            self._changed.notify_all()


class RunningService:
    """A started server: its ports, health, and a graceful ``stop``."""

    def __init__(
        self,
        service: Service,
        server: grpc.aio.Server,
        health_servicer: _HealthServicer,
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
        self.phase = STARTING
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
        if not self._stopped:
            self.phase = SERVING_PHASE if serving else STARTING

    async def stop(self, grace: float | None = None) -> None:
        """Health NOT_SERVING, refuse new calls, wait up to ``grace`` seconds for in-flight ones."""
        if self._stopped:
            return
        self._stopped = True
        grace = self.service.settings.grace_period_seconds if grace is None else grace
        log.info("draining", service=self.service.name, grace_seconds=grace)
        self.serving = False
        self.phase = DRAINING
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.service.stop is not None:
            await self.service.stop()
        self.phase = STOPPED
        await self.http.stop()
        log.info("stopped", service=self.service.name)

    async def wait_for_termination(self) -> None:
        await self.server.wait_for_termination()


async def start_service(service: Service) -> RunningService:
    """Binds the gRPC and HTTP ports, serves NOT_SERVING while ``service.start`` runs, then SERVING."""
    settings = service.settings
    observer = metrics.ServiceObserver(service.name)
    credentials = tls.server_credentials(settings.tls)
    ssl_context = tls.http_ssl_context(settings.tls)
    server = grpc.aio.server(
        interceptors=[
            tracing.server_interceptor(),
            metrics.server_interceptor(metrics.default_metrics(), observer),
            *_access_interceptors(service),
            *service.interceptors,
            ErrorMappingInterceptor(),
        ],
        options=server_options(settings),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    names = list(service.register(server))
    health_servicer = _HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.reflection_enabled:
        enable_reflection([*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name], server)
    bind = f"{settings.host}:{settings.grpc_port}"
    grpc_port = (
        server.add_insecure_port(bind) if credentials is None else server.add_secure_port(bind, credentials)
    )
    if grpc_port == 0:
        raise OSError(f"cannot bind gRPC port {settings.host}:{settings.grpc_port}")

    running: RunningService | None = None
    monitor = HealthMonitor(
        service.name,
        phase=lambda: running.phase if running is not None else STARTING,
        source=_with_features(service),
        active_sessions=observer.active_sessions,
        track_memory=settings.performance.track_memory,
        track_cpu=settings.performance.track_cpu,
    )
    http = HttpSidePort(
        monitor.assess,
        metrics_enabled=settings.metrics_enabled,
        profiling_enabled=settings.performance.enable_profiling,
        routes=service.http_routes,
    )
    running = RunningService(service, server, health_servicer, names, grpc_port, http)
    await running.set_serving(False)
    await server.start()
    metrics.observe_service(observer, names, server)  # series at 0, event-loop lag until the server stops
    await http.start(settings.host, settings.http_port, ssl_context=ssl_context)
    log.info(
        "starting",
        service=service.name,
        grpc_port=grpc_port,
        http_port=http.port,
        tls=settings.tls.enabled,
        mtls=bool(settings.tls.client_ca_file),
        reflection=settings.reflection_enabled,
    )
    if service.internal and not settings.service_token and not settings.tls.client_ca_file:
        log.warning(
            "open_to_any_caller",
            service=service.name,
            reason="neither service_token nor tls.client_ca_file (mTLS) is set: anyone who reaches "
            f"port {grpc_port} may call this service, not only the gateway",
        )
    try:
        if service.start is not None:
            await service.start()
    except BaseException:
        await running.stop(grace=0)
        raise
    await running.set_serving(True)
    log.info(
        "serving",
        service=service.name,
        grpc_port=grpc_port,
        http_port=http.port,
        features=service.flags.snapshot(),
        unknown_features=service.flags.unknown,
    )
    return running


def _access_interceptors(service: Service) -> list[grpc.aio.ServerInterceptor]:
    """A worker's service-token check, when it has a token."""
    token = service.settings.service_token
    return [ServiceTokenInterceptor(service.name, token)] if service.internal and token else []


def _with_features(service: Service) -> HealthSource:
    """The service's health report with the feature flags in force added to its details."""

    async def report() -> HealthReport:
        result = service.health_info() if service.health_info is not None else HealthReport()
        if inspect.isawaitable(result):
            result = await result
        result.details.setdefault("features", service.flags.snapshot())
        return result

    return report


def reloader(
    service: Service, load: Callable[[], SettingsT], configure_logs: bool = True
) -> Reloader[SettingsT]:
    """The :class:`Reloader` of ``service``, reading its settings again with ``load`` (which returns
    settings of the class ``service.settings`` has)."""
    return Reloader(
        service.name,
        cast(SettingsT, service.settings),
        load,
        features=service.flags,
        hook=service.reload,
        configure_logs=configure_logs,
    )


def run_service(
    service: Service, load: Callable[[], ServiceSettings] | None = None, watch: Path | None = None
) -> None:
    """Process entry point: configures logs and traces, serves until SIGTERM/SIGINT, drains, exits.
    SIGHUP reloads the settings with ``load`` (default: the settings class from ``BRIEFXAI_CONFIG``), and
    so does a change of the config file ``watch`` (None: not watched)."""
    settings = service.settings
    configure_service_logging(service.name, settings)
    tracing.configure_tracing(service.name, settings.otlp_endpoint, certificate=settings.otlp_certificate)
    try:
        asyncio.run(_serve_until_signal(service, reloader(service, load or type(settings).load), watch))
    finally:
        tracing.shutdown_tracing()


async def _reload_on_request(requested: asyncio.Event, reload: Reloader[Any]) -> None:
    """One reload per SIGHUP (signals that arrive during a reload make one more)."""
    while True:
        await requested.wait()
        requested.clear()
        try:
            await reload.reload()
        except Exception:
            log.exception("config_reload_failed", service=reload.service_name)


async def _watch_config(path: Path, requested: asyncio.Event) -> None:
    """Asks for a reload when the content of ``path`` changes. The folder is watched, not the file: an
    editor that saves by renaming, or Kubernetes swapping a ConfigMap volume's ``..data`` link, replaces
    the file rather than writing to it. Events whose file content is unchanged are ignored."""

    def content() -> bytes:
        try:
            return path.read_bytes()
        except OSError:
            return b""

    seen = content()
    async for _ in watchfiles.awatch(path.parent, debounce=200, recursive=False):
        now = content()
        if now != seen:
            seen = now
            log.info("config_file_changed", path=str(path))
            requested.set()


async def _serve_until_signal(service: Service, reload: Reloader[Any], watch: Path | None = None) -> None:
    stop_requested = asyncio.Event()
    reload_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    loop.add_signal_handler(signal.SIGHUP, reload_requested.set)
    starting = asyncio.create_task(start_service(service))
    waiting = asyncio.create_task(stop_requested.wait())
    done, _ = await asyncio.wait({starting, waiting}, return_when=asyncio.FIRST_COMPLETED)
    if starting not in done:
        starting.cancel()
        log.info("stopped_before_ready", service=service.name)
        return
    waiting_done = waiting in done
    running = starting.result()
    # A SIGHUP during start is applied now that the service's parts exist.
    background = [asyncio.create_task(_reload_on_request(reload_requested, reload))]
    if watch is not None:
        background.append(asyncio.create_task(_watch_config(watch, reload_requested)))
    try:
        if not waiting_done:
            await waiting
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
    await running.stop()


def _settings_help(settings_class: type[ServiceSettings]) -> str:
    """One line per top-level setting: its YAML key, environment variable, default and description."""
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    lines = [f"settings (YAML section `{settings_class.section}:` of the config file, or the environment):"]
    for name, field in settings_class.model_fields.items():
        default = "(nested)" if field.default_factory is not None else repr(field.default)
        lines.append(f"  {name} / {prefix}{name.upper()} = {default}")
        if field.description:
            lines.append(f"      {field.description}")
    return "\n".join(lines)


def serve_main(
    name: str,
    settings_class: type[SettingsT],
    build: Callable[[SettingsT], Service],
    argv: Sequence[str] | None = None,
) -> int:
    """What every ``python -m briefxai_<name>`` runs: parse the command line, load settings, build,
    serve; exit 2 on bad config. ``--help`` prints the settings and exits without serving."""
    parser = argparse.ArgumentParser(
        prog=f"python -m briefxai_{name}",
        description=f"Serve the BriefXAI {name} service until SIGTERM or SIGINT, then drain.",
        epilog=_settings_help(settings_class),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"YAML config file (default: the {CONFIG_ENV} environment variable, else the built-in defaults)",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="validate the settings, print the effective ones as YAML (secrets masked) and exit",
    )
    args = parser.parse_args(argv)
    try:
        settings = settings_class.load(args.config)
        if args.print_config:
            values = mask_secrets(settings.model_dump(mode="json"))
            print(yaml.safe_dump({settings_class.section: values}, sort_keys=False), end="")
            return 0
        service = build(settings)
    except ConfigError as error:
        print(f"briefxai-{name}: {error}", file=sys.stderr)
        return 2
    config_file = args.config or os.environ.get(CONFIG_ENV, "")
    run_service(
        service,
        lambda: settings_class.load(args.config),
        Path(config_file).resolve() if config_file else None,
    )
    return 0
