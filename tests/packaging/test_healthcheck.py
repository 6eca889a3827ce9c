"""``python -m briefxai_common.healthcheck`` (the images' HEALTHCHECK) run as a process against a real
clustering service: exit 0 only when it says SERVING."""

from __future__ import annotations

import asyncio
import dataclasses
import sys

from briefxai_clustering.server import build_service
from briefxai_clustering.settings import ClusteringSettings
from briefxai_common.bootstrap import RunningService, start_service
from tests.support.ports import free_port
from tests.support.services import assert_serving, local_settings

CLUSTERING = "briefxai.clustering.v1.ClusteringService"


async def healthcheck(*args: str) -> tuple[int, str]:
    """Runs the module in a child process (the event loop keeps serving meanwhile): exit status, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "briefxai_common.healthcheck",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


def clustering_settings(**values: object) -> ClusteringSettings:
    return local_settings(ClusteringSettings, warm_up_map=False, compute_threads=1, **values)


async def test_exit_zero_when_serving_one_when_not() -> None:
    running = await start_service(build_service(clustering_settings()))
    try:
        await assert_serving(running.address, CLUSTERING)
        port = str(running.grpc_port)
        assert await healthcheck("--port", port) == (0, f"127.0.0.1:{port} (server): SERVING\n")
        code, said = await healthcheck("--port", port, "--service", CLUSTERING)
        assert (code, said.split(": ")[-1]) == (0, "SERVING\n")
        code, said = await healthcheck("--port", port, "--service", "briefxai.nope.v1.NopeService")
        assert code == 1 and "NOT_FOUND" in said
    finally:
        await running.stop(grace=0)
    code, said = await healthcheck("--port", port, "--timeout", "1")
    assert code == 1 and ("UNAVAILABLE" in said or "DEADLINE_EXCEEDED" in said), said


async def test_exit_one_while_the_service_is_starting() -> None:
    """Between bind and the end of ``start`` (a model loading, say) health is NOT_SERVING."""
    entered, release = asyncio.Event(), asyncio.Event()
    service = build_service(clustering_settings(grpc_port=free_port()))
    own_start = service.start

    async def slow_start() -> None:
        entered.set()
        await release.wait()
        if own_start is not None:
            await own_start()

    starting = asyncio.create_task(start_service(dataclasses.replace(service, start=slow_start)))
    running: RunningService | None = None
    try:
        await asyncio.wait_for(entered.wait(), timeout=30)
        port = str(service.settings.grpc_port)
        code, said = await healthcheck("--port", port)
        assert code == 1 and said.endswith(": NOT_SERVING\n"), said
        release.set()
        running = await starting
        assert await healthcheck("--port", port) == (0, f"127.0.0.1:{port} (server): SERVING\n")
    finally:
        release.set()
        running = running or await starting
        await running.stop(grace=0)
