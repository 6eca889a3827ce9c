"""The HTTP side port of every service: ``/health`` (JSON, the reference's shape: see ``health.py``),
``/livez`` and ``/readyz`` for probes, ``/metrics`` (Prometheus text) and, when profiling is enabled,
``/debug/profile``; over HTTPS when the service has a certificate (``tls.py``), never asking for a client
certificate (probes and scrapers have none).

- ``/livez``: 200 while the process' event loop answers (it is this handler that answers).
- ``/readyz``: 200 when the service can serve (started, not draining, model loaded, store reachable),
  else 503 with the reasons.
- ``/health``: 200 when healthy or degraded, 503 when unhealthy.
- ``/metrics``: 404 when ``metrics_enabled`` is off.
- ``/debug/profile?seconds=N`` (``performance.enable_profiling``): cProfile of the event-loop thread
  for N seconds (default 10, at most 60), the 40 costliest functions by cumulative time, as text.

A service adds routes of its own with ``Service(..., http_routes=[web.get(path, handler), ...])`` (the
gateway's ``/analyses/{id}/report``); they are added after the ones above, which they cannot replace.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import ssl
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from briefxai_common.health import UNHEALTHY, Assessment

MAX_PROFILE_SECONDS = 60.0


class HttpSidePort:
    """Serves health, probes and metrics on ``host:port``; ``assess`` runs on every health request."""

    def __init__(
        self,
        assess: Callable[[], Awaitable[Assessment]],
        *,
        metrics_enabled: bool = True,
        profiling_enabled: bool = False,
        registry: CollectorRegistry = REGISTRY,
        routes: Sequence[web.AbstractRouteDef] = (),
    ) -> None:
        self._assess = assess
        self._routes = list(routes)
        self._metrics_enabled = metrics_enabled
        self._profiling_enabled = profiling_enabled
        self._profiling = False
        self._registry = registry
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> int:
        """Serves on ``host:port`` (0: a free port), over HTTPS with ``ssl_context``; returns the port."""
        app = web.Application()
        if self._metrics_enabled:
            app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        if self._profiling_enabled:
            app.router.add_get("/debug/profile", self._profile)
        app.router.add_routes(self._routes)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _health(self, _: web.Request) -> web.Response:
        assessment = await self._assess()
        return web.json_response(assessment.body, status=503 if assessment.status == UNHEALTHY else 200)

    async def _livez(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _readyz(self, _: web.Request) -> web.Response:
        assessment = await self._assess()
        if assessment.ready:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not_ready", "reasons": assessment.reasons}, status=503)

    async def _profile(self, request: web.Request) -> web.Response:
        try:
            seconds = min(max(float(request.query.get("seconds", "10")), 0.01), MAX_PROFILE_SECONDS)
        except ValueError:
            return web.Response(status=400, text="seconds must be a number\n")
        if self._profiling:
            return web.Response(status=409, text="a profile is already being taken\n")
        self._profiling = True
        profiler = cProfile.Profile()
        try:
            profiler.enable()  # this thread (the event loop's): every callback and coroutine step on it
            try:
                await asyncio.sleep(seconds)
            finally:
                profiler.disable()
        finally:
            self._profiling = False
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
        return web.Response(text=out.getvalue())
