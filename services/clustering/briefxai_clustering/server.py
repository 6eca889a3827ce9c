"""Builds the clustering service for the shared bootstrap: servicer, job slots, UMAP warm-up on start."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import grpc

from briefxai.clustering.v1 import clustering_pb2_grpc
from briefxai_clustering.jobs import JobSlots
from briefxai_clustering.llm_naming import LLMNamer
from briefxai_clustering.naming import Namer
from briefxai_clustering.pipeline import ClusteringPipeline, PipelineConfig, offline_namer
from briefxai_clustering.projection import warm_up
from briefxai_clustering.servicer import SERVICE_NAME, ClusteringServicer
from briefxai_clustering.settings import ClusteringSettings
from briefxai_common.bootstrap import Service
from briefxai_common.health import HealthReport
from briefxai_common.logging import get_logger

log = get_logger(__name__)


def build_service(settings: ClusteringSettings, namer: Namer | None = None) -> Service:
    """The clustering service. With ``warm_up_map`` (default) ``start`` compiles UMAP's numba code before
    health says SERVING (tens of seconds on 2 cores); ``namer`` replaces the configured namer (``namer:
    offline``, the keyword namer, or ``llm``, whose HTTP client opens in ``start``)."""
    config = PipelineConfig.from_settings(settings)
    llm_namer = (
        LLMNamer(
            settings.llm,
            offline_namer(config),
            retry_policy=settings.llm.retry_policy(settings.retry_policies.llm_provider),
            breaker=settings.circuit_breakers.llm_provider,
            redact_external=settings.privacy.redact_external,
        )
        if namer is None and settings.namer == "llm"
        else None
    )
    pipeline = ClusteringPipeline(config, namer or llm_namer)
    state: dict[str, Any] = {"map_warm": False, "warm_up_seconds": None}
    jobs: JobSlots | None = None
    servicer: ClusteringServicer | None = None

    def register(server: grpc.aio.Server) -> Sequence[str]:
        nonlocal jobs, servicer
        jobs = JobSlots(settings.max_concurrent_jobs, settings.max_queued_jobs)
        servicer = ClusteringServicer(pipeline, settings, jobs)
        clustering_pb2_grpc.add_ClusteringServiceServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    async def start() -> None:
        if llm_namer is not None:
            await llm_namer.start()
        if settings.warm_up_map:
            started = time.perf_counter()
            await asyncio.to_thread(warm_up, pipeline.config.map)
            state["map_warm"] = True
            state["warm_up_seconds"] = round(time.perf_counter() - started, 1)
            log.info("map_warm", seconds=state["warm_up_seconds"])

    def health_info() -> HealthReport:
        """Degraded while every job slot is taken and the queue is full (a new job would be refused)."""
        running = jobs.running if jobs else 0
        waiting = jobs.waiting if jobs else 0
        full = jobs is not None and running >= jobs.max_running and waiting >= jobs.max_waiting
        return HealthReport(
            degraded=["job queue full"] if full else [],
            active_sessions=running + waiting,
            details={
                "jobs_running": running,
                "jobs_waiting": waiting,
                "max_vectors": settings.max_vectors,
                "compute_threads": pipeline.config.threads,
                "namer": "llm" if llm_namer is not None else ("offline" if namer is None else "custom"),
                **({"llm_naming": llm_namer.describe()} if llm_namer is not None else {}),
                **state,
            },
        )

    async def stop() -> None:
        if llm_namer is not None:
            await llm_namer.close()

    return Service(
        name="clustering",
        settings=settings,
        register=register,
        start=start,
        stop=stop,
        health_info=health_info,
        internal=True,
    )
