"""The HTTP side port of every service: ``/metrics`` (Prometheus text) and ``/health`` (JSON)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psutil
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest


class HttpSidePort:
    """Serves metrics and health on ``host:port``; ``status`` is read on every /health request."""

    def __init__(
        self,
        service: str,
        status: Callable[[], str],
        info: Callable[[], dict[str, Any]] | None = None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self._service = service
        self._status = status
        self._info = info
        self._registry = registry
        self._started = time.monotonic()
        self._process = psutil.Process()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "service": self._service,
            "status": self._status(),
            "uptime_seconds": round(time.monotonic() - self._started, 3),
            "memory_usage_mb": round(self._process.memory_info().rss / (1024 * 1024), 1),
        }
        if self._info is not None:
            body.update(self._info())
        return body

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _health(self, _: web.Request) -> web.Response:
        body = self.health()
        return web.json_response(body, status=200 if body["status"] == "SERVING" else 503)
