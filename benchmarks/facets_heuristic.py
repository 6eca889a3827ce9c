"""Heuristic facets throughput on realistic multi-turn conversations (a measurement, not a test).

Run: ``.venv/bin/python -m benchmarks.facets_heuristic [count] [workers]``. Prints conversations per
second for the provider alone (wall time, and per CPU-second of this process, steadier on a shared
machine) and end to end through gRPC (one ExtractFacets call with every conversation).
"""

from __future__ import annotations

import asyncio
import sys
import time

import grpc

from briefxai.facets.v1 import facets_pb2, facets_pb2_grpc
from briefxai_common.bootstrap import start_service
from briefxai_common.conversations_proto import conversation_to_proto
from briefxai_facets.definitions import Conversation, FacetCatalog, Job
from briefxai_facets.heuristic import HeuristicProvider
from briefxai_facets.server import build_service
from briefxai_facets.settings import FacetsSettings, HeuristicSettings
from tests.facets.corpus import make_conversations


async def provider_rate(conversations: list[Conversation], workers: int) -> str:
    jobs = [Job(c, FacetCatalog().all) for c in conversations]
    provider = HeuristicProvider(HeuristicSettings(workers=workers))
    started = time.perf_counter()
    await provider.start()
    startup = time.perf_counter() - started
    await provider.extract(jobs[:50])  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    await provider.extract(jobs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await provider.close()
    per_cpu = f", {len(jobs) / cpu:.0f}/CPU-s of this process" if workers == 1 else ""
    return (
        f"provider, workers={workers}: start {startup:.2f} s, {len(jobs) / wall:.0f} conversations/s{per_cpu}"
    )


async def grpc_rate(conversations: list[Conversation], workers: int) -> str:
    settings = FacetsSettings.load(
        host="127.0.0.1", grpc_port=0, http_port=0, heuristic={"workers": workers}, log_level="warning"
    )
    service = await start_service(build_service(settings))
    request = facets_pb2.ExtractFacetsRequest(conversations=[conversation_to_proto(c) for c in conversations])
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            stub = facets_pb2_grpc.FacetsServiceStub(channel)
            await stub.ExtractFacets(
                facets_pb2.ExtractFacetsRequest(conversations=request.conversations[:50])
            )
            wall = time.perf_counter()
            reply = await stub.ExtractFacets(request)
            wall = time.perf_counter() - wall
    finally:
        await service.stop(grace=0)
    assert len(reply.results) == len(conversations)
    return f"gRPC ExtractFacets, workers={workers}: {len(conversations) / wall:.0f} conversations/s"


async def main(count: int, workers: int) -> None:
    conversations = make_conversations(count)
    messages = sum(len(c.messages) for c in conversations) / count
    chars = sum(len(m.content) for c in conversations for m in c.messages) / count
    print(f"{count} conversations, {messages:.1f} messages and {chars:.0f} characters each on average")
    print(await provider_rate(conversations, workers))
    print(await grpc_rate(conversations, workers))


if __name__ == "__main__":
    asyncio.run(
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000, int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    )
