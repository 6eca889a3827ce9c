"""Builds the gateway for the shared bootstrap: store, downstream clients, manager, servicer.

``start`` (port bound, health NOT_SERVING) opens the downstream channels, starts watching their
grpc.health.v1 status, runs the store migrations, resumes unfinished analyses and starts the performance sampler
(``sampler.py``); ``stop`` (after the server drained) stops the pipelines, leaving their analyses to be
resumed by the next start, then the sampler, and closes the watches, channels and the store.

Reload (SIGHUP, ``briefxai_common.reload``): the feature flags (``GATEWAY_FLAGS``), the settings in
:data:`RELOADABLE` and the downstreams' ``circuit_breakers`` (thresholds and timeouts; their state stays)
change live; the others need a restart.

Health (``health_info``): unhealthy while the store does not answer ``SELECT 1`` within
:data:`STORE_PING_TIMEOUT_SECONDS`; degraded while a downstream is not SERVING (``providers``:
unavailable) or its circuit breaker is not closed (``providers``: degraded).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

import grpc
from sqlalchemy import Engine, text

from briefxai.gateway.v1 import gateway_pb2_grpc, security_pb2_grpc
from briefxai_common.apikeys import MalformedApiKey
from briefxai_common.bootstrap import Service
from briefxai_common.config import ConfigError
from briefxai_common.errors import Unavailable
from briefxai_common.features import FeatureFlags
from briefxai_common.health import AVAILABLE, CONNECTED, DEGRADED, DISCONNECTED, UNAVAILABLE, HealthReport
from briefxai_common.logging import get_logger
from briefxai_common.reload import reconfigure_breaker
from briefxai_common.resilience import Retrier, transient_store_error

from .auth_interceptor import AuthInterceptor
from .clients import Downstream, GrpcDownstreams
from .health_watch import DownstreamHealth, HealthWatcher
from .manager import AnalysisManager
from .metrics import SERVICE
from .outages import GATEWAY_FLAGS
from .report_route import report_routes
from .sampler import PerformanceSampler
from .security.audit import AuditEvent, AuditTrail
from .security.authn import Authenticator
from .security.guard import Guard
from .security.jwt_auth import JwtVerifier
from .security.keys import KeyManager
from .security.monitor import SecurityMonitor
from .security.principal import SYSTEM_ACTOR
from .security.retention import RetentionJob
from .security.users import UserData
from .security_servicer import SERVICE_NAME as SECURITY_SERVICE_NAME
from .security_servicer import SecurityServicer
from .servicer import SERVICE_NAME, AnalysisServicer
from .settings import GatewaySettings
from .store import Store

log = get_logger(__name__)

STORE_PING_TIMEOUT_SECONDS = 2.0
# Settings read at each use, so a reload can change them in place.
RELOADABLE = ("outage_budget_seconds", "watch_poll_seconds")


def _select_one(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def provider_state(watcher: HealthWatcher | None, downstream: Downstream) -> str:
    """available: SERVING with a closed breaker; degraded: SERVING but the breaker is not closed;
    unavailable: anything but SERVING (not serving, unknown service, unreachable, no answer yet)."""
    if watcher is None or not watcher.serving:
        return UNAVAILABLE
    return AVAILABLE if downstream.breaker.state.label == "closed" else DEGRADED


class Gateway:
    """The gateway's parts, created in ``start`` (inside the event loop) and closed in ``stop``."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.features = FeatureFlags(GATEWAY_FLAGS, settings.features)
        self.store: Store | None = None
        self.downstreams: GrpcDownstreams | None = None
        self.downstream_health: DownstreamHealth | None = None
        self._manager: AnalysisManager | None = None
        self._sampler: PerformanceSampler | None = None
        self._ping: asyncio.Future[None] | None = None
        self._guard: Guard | None = None
        self._audit: AuditTrail | None = None
        self._keys: KeyManager | None = None
        self._users: UserData | None = None
        self._retention: RetentionJob | None = None
        self._background: set[asyncio.Task[None]] = set()

    @property
    def manager(self) -> AnalysisManager:
        if self._manager is None:
            raise Unavailable("the gateway is starting", reason="STARTING")
        return self._manager

    @property
    def sampler(self) -> PerformanceSampler:
        if self._sampler is None:
            raise Unavailable("the gateway is starting", reason="STARTING")
        return self._sampler

    @property
    def guard(self) -> Guard:
        if self._guard is None:
            raise Unavailable("the gateway is starting", reason="STARTING")
        return self._guard

    @property
    def audit(self) -> AuditTrail:
        if self._audit is None:
            raise Unavailable("the gateway is starting", reason="STARTING")
        return self._audit

    @property
    def keys(self) -> KeyManager:
        if self._keys is None:
            raise Unavailable("the gateway is starting", reason="STARTING")
        return self._keys

    @property
    def users(self) -> UserData:
        if self._users is None:
            raise Unavailable("the gateway is starting", reason="STARTING")
        return self._users

    async def start(self) -> None:
        self.store = Store(self.settings.store_url, self.settings.tenant_id)
        self.store.retrier = Retrier(
            SERVICE,
            "store",
            self.settings.retry_policies.store.policy(),
            is_retryable=transient_store_error,
        )
        self.downstreams = GrpcDownstreams(self.settings)
        self.downstream_health = DownstreamHealth(
            {d.service: d.address for d in self.downstreams.all},
            tls=self.settings.tls,
            service_token=self.settings.service_token,
        )
        self.downstream_health.start()
        manager = AnalysisManager(
            self.settings, self.store, self.downstreams.clients, self.downstream_health, self.features
        )
        sampler = PerformanceSampler(self.settings, self.store, SERVICE_NAME)
        manager.hub.on_finish(sampler.analysis_finished)
        await manager.start()
        await sampler.start()
        self._sampler = sampler
        self._manager = manager
        await self._start_security(self.store, manager, self.downstreams)

    async def _start_security(
        self, store: Store, manager: AnalysisManager, downstreams: GrpcDownstreams
    ) -> None:
        """Audit trail, keys (the bootstrap admin key stored), authentication, the security rules, the
        users' data and the retention job; after the migrations, which create their tables."""
        settings = self.settings
        audit = AuditTrail(store, settings.audit)
        keys = KeyManager(store, settings.tenant_id)
        jwt = JwtVerifier(settings.auth.jwt) if settings.auth.jwt.issuer else None
        monitor = SecurityMonitor(settings.auth, audit.record)
        authenticator = Authenticator(keys, jwt)
        self._guard = Guard(
            settings.auth, settings.audit, settings.tenant_id, authenticator, monitor, audit.record
        )
        self._audit, self._keys = audit, keys
        self._users = UserData(manager, clear_embedding_cache=downstreams.embedding.clear_cache)
        if settings.auth.mode == "off":
            log.warning(
                "auth_off",
                message="auth.mode is off: every caller who reaches the gateway is an admin of tenant "
                f"{settings.tenant_id!r}",
            )
        if settings.auth.bootstrap_admin_key_file:
            await self._store_bootstrap_key(keys, audit, settings.auth.bootstrap_admin_key_file)
        # Each start is on the record (and signs the chain head with the current checkpoint key).
        await audit.record(
            AuditEvent(
                actor=SYSTEM_ACTOR,
                tenant_id=settings.tenant_id,
                peer="",
                rpc="startup",
                resource="gateway",
                action="service.start",
                outcome="ok",
                details={"auth_mode": settings.auth.mode, "jwt": bool(settings.auth.jwt.issuer)},
            )
        )

        async def audit_retention(now: datetime) -> None:
            await audit.apply_retention(now)

        self._retention = RetentionJob(
            manager, settings.retention, on_run=audit_retention, audit=audit.record
        )
        self._retention.start()

    @staticmethod
    async def _store_bootstrap_key(keys: KeyManager, audit: AuditTrail, path: str) -> None:
        try:
            created = await keys.ensure_bootstrap(path)
        except (OSError, MalformedApiKey) as exc:
            raise ConfigError(f"gateway.auth.bootstrap_admin_key_file: {path}: {exc}") from exc
        if created is not None:
            log.info("bootstrap_admin_key_stored", key_id=created.id, tenant_id=created.tenant_id)
            await audit.record(
                AuditEvent(
                    actor=SYSTEM_ACTOR,
                    tenant_id=created.tenant_id,
                    peer="",
                    rpc="startup",
                    resource=f"api_keys/{created.id}",
                    action="key.create",
                    outcome="ok",
                    details={"role": created.role.label, "source": "bootstrap_admin_key_file"},
                )
            )

    async def stop(self) -> None:
        if self._retention is not None:
            await self._retention.stop()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._manager is not None:
            await self._manager.stop()
        if self._sampler is not None:
            await self._sampler.stop()
        if self.downstream_health is not None:
            await self.downstream_health.stop()
        if self.downstreams is not None:
            await self.downstreams.close()
        if self.store is not None:
            self.store.close()

    def reload(self, new: GatewaySettings, changed: frozenset[str]) -> list[str]:
        """Applies the changed settings of :data:`RELOADABLE` and the breakers' (the bootstrap does logs
        and flags)."""
        applied = [key for key in RELOADABLE if key in changed]
        if "circuit_breakers" in changed and self.downstreams is not None:
            for downstream in self.downstreams.all:
                reconfigure_breaker(downstream.breaker, getattr(new.circuit_breakers, downstream.service))
            applied.append("circuit_breakers")
        if "retry_policies" in changed and self.downstreams is not None:
            for downstream in self.downstreams.all:
                downstream.retrier.set_policy(getattr(new.retry_policies, downstream.service).policy())
            if self.store is not None and self.store.retrier is not None:
                self.store.retrier.set_policy(new.retry_policies.store.policy())
            applied.append("retry_policies")
        for key in applied:
            setattr(self.settings, key, getattr(new, key))
        self._record_reload(changed, applied)
        return applied

    def _record_reload(self, changed: frozenset[str], applied: list[str]) -> None:
        """An audit record of a reload (from a SIGHUP or the file watch, inside the event loop)."""
        if self._audit is None:
            return
        event = AuditEvent(
            actor=SYSTEM_ACTOR,
            tenant_id=self.settings.tenant_id,
            peer="",
            rpc="config.reload",
            resource="config",
            action="config.reload",
            outcome="ok",
            details={"changed": sorted(changed), "applied": sorted(applied)},
        )
        task = asyncio.get_running_loop().create_task(self._audit.record(event))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def store_error(self) -> str | None:
        """None when the store answers ``SELECT 1`` in time, else what went wrong. A ping still running
        from an earlier request is awaited rather than started again."""
        assert self.store is not None  # noqa: S101  invariant for mypy, not a check on input
        if self._ping is None or self._ping.done():
            self._ping = asyncio.ensure_future(asyncio.to_thread(_select_one, self.store.engine))
            self._ping.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            await asyncio.wait_for(asyncio.shield(self._ping), STORE_PING_TIMEOUT_SECONDS)
        except TimeoutError:
            return f"no answer within {STORE_PING_TIMEOUT_SECONDS:g} s"
        except Exception as exc:
            return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        return None

    async def health_info(self) -> HealthReport:
        report = HealthReport()
        if self._manager is not None:
            manager = self._manager
            report.active_sessions = manager.scheduler.running_count + manager.scheduler.queued_count
            report.details.update(manager.health_info())
        if self.store is not None:
            error = await self.store_error()
            report.database_status = CONNECTED if error is None else DISCONNECTED
            if error is not None:
                report.not_ready.append(f"store unreachable: {error}")
                report.details["database_error"] = error
        if self.downstreams is not None:
            watchers = {w.name: w for w in self.downstream_health.watchers} if self.downstream_health else {}
            report.providers = {
                d.service: provider_state(watchers.get(d.service), d) for d in self.downstreams.all
            }
            report.circuit_breakers = {d.service: d.breaker.state.label for d in self.downstreams.all}
            report.details["downstream"] = {
                d.service: {
                    "address": d.address,
                    "health": watchers[d.service].status if d.service in watchers else "UNKNOWN",
                    "circuit_breaker": d.breaker.snapshot(),
                }
                for d in self.downstreams.all
            }
        return report


def build_gateway(settings: GatewaySettings) -> tuple[Service, Gateway]:
    """The service for the bootstrap and the gateway behind it (tests reach the store through it)."""
    gateway = Gateway(settings)
    servicer = AnalysisServicer(lambda: gateway.manager, lambda: gateway.sampler)

    def register(server: grpc.aio.Server) -> Sequence[str]:
        gateway_pb2_grpc.add_AnalysisServiceServicer_to_server(servicer, server)
        security_pb2_grpc.add_SecurityServiceServicer_to_server(SecurityServicer(lambda: gateway), server)
        return [SERVICE_NAME, SECURITY_SERVICE_NAME]

    service = Service(
        name="gateway",
        settings=settings,
        register=register,
        start=gateway.start,
        stop=gateway.stop,
        health_info=gateway.health_info,
        http_routes=report_routes(lambda: gateway.manager, lambda: gateway.guard),
        interceptors=[AuthInterceptor(lambda: gateway.guard)],
        features=gateway.features,
        reload=gateway.reload,
    )
    return service, gateway


def build_service(settings: GatewaySettings) -> Service:
    return build_gateway(settings)[0]
