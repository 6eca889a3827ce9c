"""The facets service's /health: each provider available, degraded or unavailable from its recent
calls, over a real server and the scripted OpenAI-compatible HTTP server."""

from __future__ import annotations

import asyncio
from typing import cast

import grpc

from briefxai.facets.v1 import facets_pb2, facets_pb2_grpc
from briefxai_common.bootstrap import start_service
from briefxai_facets.server import build_service
from briefxai_facets.settings import FacetsSettings
from tests.support.fake_openai import FakeOpenAI
from tests.support.http import get_json, http_get

from .test_service import LLM, REFUND, Stub, llm_settings, valid_reply


async def test_llm_provider_degrades_then_becomes_unavailable_then_recovers(fake_openai: FakeOpenAI) -> None:
    settings = FacetsSettings.load(
        host="127.0.0.1", grpc_port=0, http_port=0, **llm_settings(fake_openai, max_attempts=1)
    )
    service = await start_service(build_service(settings))
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            stub = cast(Stub, facets_pb2_grpc.FacetsServiceStub(channel))

            async def extract() -> None:
                await stub.ExtractFacets(facets_pb2.ExtractFacetsRequest(conversations=[REFUND]))

            status, body = await get_json(service.http_port, "/health")
            assert (status, body["status"]) == (200, "healthy")
            assert body["providers"] == {LLM: "available", "heuristic": "available"}
            assert body["provider_order"] == [LLM, "heuristic"]

            fake_openai.chat_default = lambda request: "not JSON at all"  # every LLM value fails
            await extract()
            status, body = await get_json(service.http_port, "/health")
            assert (status, body["status"]) == (200, "degraded")
            assert body["providers"] == {LLM: "degraded", "heuristic": "available"}
            assert body["reasons"] == [f"{LLM} degraded"]

            await extract()
            await extract()
            status, body = await get_json(service.http_port, "/health")
            assert (status, body["status"]) == (200, "degraded")
            assert body["providers"][LLM] == "unavailable"
            assert (await asyncio.to_thread(http_get, service.http_port, "/readyz"))[0] == 200

            fake_openai.chat_default = valid_reply
            await extract()
            status, body = await get_json(service.http_port, "/health")
            assert (status, body["status"]) == (200, "healthy")
            assert body["providers"] == {LLM: "available", "heuristic": "available"}
    finally:
        await service.stop(grace=0)
