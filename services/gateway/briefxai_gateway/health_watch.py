"""The downstream services' grpc.health.v1 status, followed with ``Watch`` streams.

One background task per downstream keeps a ``Watch`` open on the downstream's own service name
(``briefxai.facets.v1.FacetsService``...) over a plain channel of its own (no metrics or tracing
interceptors: a stream open for hours is neither an operation nor a span), over TLS and with the service
token as the gateway's calls to the downstreams (``channels.open_channel``). Each message updates the
status; when the stream fails or ends (the downstream stopped or drains), the status becomes
``UNREACHABLE`` and the task reconnects after a backoff that doubles from ``initial_backoff`` up to
``max_backoff`` (with jitter), and starts again from ``initial_backoff`` once a message arrives. No
request ever waits on it: ``/health`` reads the last status. An analysis waiting out an outage
(``scheduler.py``) waits for a status change (:meth:`HealthWatcher.wait_serving`) to retry as soon as
the downstream is SERVING again.

With ``dns:///`` or ``ipv4:`` addresses over several replicas the stream follows one of them (gRPC's default
pick-first), so its status is that replica's; calls already skip replicas that are not SERVING (channels.py).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from briefxai.clustering.v1 import clustering_pb2
from briefxai.embedding.v1 import embedding_pb2
from briefxai.facets.v1 import facets_pb2
from briefxai_common.channels import open_channel
from briefxai_common.config import TLSSettings
from briefxai_common.logging import get_logger
from briefxai_common.service_auth import token_interceptors

log = get_logger(__name__)

UNKNOWN = "UNKNOWN"  # no answer yet
UNREACHABLE = "UNREACHABLE"  # the stream failed; reconnecting
SERVING = "SERVING"
# The gRPC service each downstream serves, whose health is watched.
SERVICE_NAMES = {
    "facets": facets_pb2.DESCRIPTOR.services_by_name["FacetsService"].full_name,
    "embedding": embedding_pb2.DESCRIPTOR.services_by_name["EmbeddingService"].full_name,
    "clustering": clustering_pb2.DESCRIPTOR.services_by_name["ClusteringService"].full_name,
}
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    # The channel's own reconnection backoff would otherwise grow to two minutes while a service is down.
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5_000),
]


class HealthWatcher:
    """Follows one downstream's health; :attr:`status` is the last one seen."""

    def __init__(
        self,
        name: str,
        address: str,
        service_name: str,
        initial_backoff: float = 0.5,
        max_backoff: float = 5.0,
        *,
        tls: TLSSettings | None = None,
        service_token: str = "",
    ) -> None:
        self.name = name
        self.tls = tls
        self.service_token = service_token
        self.address = address
        self.service_name = service_name
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.status = UNKNOWN
        self._task: asyncio.Task[None] | None = None
        self._channel: grpc.aio.Channel | None = None
        self._changed = asyncio.Event()  # set (and replaced) at each status change

    @property
    def serving(self) -> bool:
        return self.status == SERVING

    async def wait_serving(self, seconds: float) -> bool:
        """Waits up to ``seconds`` for the status to be SERVING; True when it is."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, seconds)
        while not self.serving:
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                return self.serving
        return True

    def start(self) -> None:
        if self._task is None:
            self._channel = open_channel(
                self.address, self.tls, CHANNEL_OPTIONS, token_interceptors(self.service_token)
            )
            self._task = asyncio.create_task(self._follow(), name=f"health-watch-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None

    def _set(self, status: str, **fields: object) -> None:
        if status == self.status:
            return
        event = "downstream_health"
        if self.status == SERVING:
            log.warning(event, downstream=self.name, old=self.status, new=status, **fields)
        else:
            log.info(event, downstream=self.name, old=self.status, new=status, **fields)
        self.status = status
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _follow(self) -> None:
        assert self._channel is not None  # noqa: S101  invariant for mypy, not a check on input
        stub = health_pb2_grpc.HealthStub(self._channel)
        backoff = self.initial_backoff
        while True:
            try:
                call = stub.Watch(health_pb2.HealthCheckRequest(service=self.service_name))
                async for reply in call:
                    self._set(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
                    backoff = self.initial_backoff
                self._set(UNREACHABLE, reason="stream ended")
            except grpc.aio.AioRpcError as error:
                self._set(UNREACHABLE, reason=error.code().name)
            await asyncio.sleep(random.uniform(backoff / 2, backoff))  # noqa: S311  retry jitter, not a secret
            backoff = min(self.max_backoff, backoff * 2)


class DownstreamHealth:
    """The watchers of every downstream, started and stopped with the gateway."""

    def __init__(
        self,
        addresses: dict[str, str],
        initial_backoff: float = 0.5,
        max_backoff: float = 5.0,
        *,
        tls: TLSSettings | None = None,
        service_token: str = "",
    ):
        self.watchers = [
            HealthWatcher(
                name,
                address,
                SERVICE_NAMES[name],
                initial_backoff,
                max_backoff,
                tls=tls,
                service_token=service_token,
            )
            for name, address in addresses.items()
        ]

    def start(self) -> None:
        for watcher in self.watchers:
            watcher.start()

    async def stop(self) -> None:
        await asyncio.gather(*(watcher.stop() for watcher in self.watchers))

    def statuses(self, names: Sequence[str] | None = None) -> dict[str, str]:
        return {w.name: w.status for w in self.watchers if names is None or w.name in names}

    def watcher(self, name: str) -> HealthWatcher | None:
        return next((w for w in self.watchers if w.name == name), None)
