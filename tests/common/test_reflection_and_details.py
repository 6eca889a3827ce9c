"""Reflection v1 and v1alpha, and the google.rpc details of retryable errors, on a real server.

`buf curl` (installed by the Makefile from npm) is a client that asks for reflection v1 first.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_reflection.v1alpha import reflection_pb2
from grpc_status import rpc_status
from pydantic_settings import SettingsConfigDict

from briefxai.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from briefxai_common.bootstrap import RunningService, Service, start_service
from briefxai_common.config import ServiceSettings
from briefxai_common.errors import ERROR_DOMAIN, ResourceExhausted, Unavailable
from briefxai_common.reflection import V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME

EMBEDDING_SERVICE = embedding_pb2.DESCRIPTOR.services_by_name["EmbeddingService"].full_name
BUF = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "buf"


class ProbeSettings(ServiceSettings):
    section: ClassVar[str] = "probe"
    model_config = SettingsConfigDict(env_prefix="BRIEFXAI_PROBE_", env_nested_delimiter="__", extra="forbid")


class FailingServicer(embedding_pb2_grpc.EmbeddingServiceServicer):
    """texts[0] picks the error: "busy" → RESOURCE_EXHAUSTED, "down" → UNAVAILABLE without a delay."""

    async def EmbedTexts(self, request: Any, context: Any) -> embedding_pb2.EmbedTextsResponse:
        if request.texts[0] == "busy":
            raise ResourceExhausted(
                "queue full", reason="QUEUE_FULL", retry_after_seconds=2.5, metadata={"waiting": "7"}
            )
        raise Unavailable("backend down", retry_after_seconds=None)


@pytest.fixture
async def running() -> AsyncIterator[RunningService]:
    def register(server: grpc.aio.Server) -> list[str]:
        embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(FailingServicer(), server)  # type: ignore[abstract]
        return [EMBEDDING_SERVICE]

    settings = ProbeSettings.load(host="127.0.0.1", grpc_port=0, http_port=0)
    service = await start_service(Service("probe", settings, register))
    yield service
    await service.stop(grace=0)


async def _list_services(address: str, service_name: str) -> set[str]:
    """Calls ServerReflectionInfo under ``service_name`` (v1 and v1alpha share their messages)."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.stream_stream(
            f"/{service_name}/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )

        async def requests() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        async for reply in call(requests()):
            return {service.name for service in reply.list_services_response.service}
    raise AssertionError("no reflection reply")


@pytest.mark.parametrize("service_name", [V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME])
async def test_reflection_answers_under_both_names(running: RunningService, service_name: str) -> None:
    names = await _list_services(running.address, service_name)
    assert {EMBEDDING_SERVICE, "grpc.health.v1.Health", V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME} <= names


def _buf_curl(*args: str) -> subprocess.CompletedProcess[str]:
    assert BUF.exists(), f"{BUF} is missing: `make lint` installs buf from npm"
    return subprocess.run(
        [str(BUF), "curl", "--protocol", "grpc", "--http2-prior-knowledge", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_buf_curl_lists_and_describes_over_reflection_v1(running: RunningService) -> None:
    url = f"http://{running.address}"
    listed = await asyncio.to_thread(_buf_curl, "--reflect-protocol", "grpc-v1", "--list-services", url)
    assert listed.returncode == 0, listed.stderr
    assert EMBEDDING_SERVICE in listed.stdout.split()
    methods = await asyncio.to_thread(_buf_curl, "--reflect-protocol", "grpc-v1", "--list-methods", url)
    assert methods.returncode == 0, methods.stderr
    assert f"{EMBEDDING_SERVICE}/GetModelInfo" in methods.stdout.split()


async def test_buf_curl_reads_error_details_by_reflection(running: RunningService) -> None:
    url = f"http://{running.address}/{EMBEDDING_SERVICE}/EmbedTexts"
    reply = await asyncio.to_thread(_buf_curl, "--data", json.dumps({"texts": ["busy"]}), url)
    assert reply.returncode != 0
    error = json.loads(reply.stderr)
    assert error["code"] == "resource_exhausted"
    kinds = {detail["type"] for detail in error["details"]}
    assert kinds == {"google.rpc.ErrorInfo", "google.rpc.RetryInfo"}


async def _status_of(address: str, text: str) -> tuple[grpc.StatusCode, list[Any]]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=[text]))
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    assert status is not None
    return caught.value.code(), list(status.details)


async def test_resource_exhausted_carries_error_info_and_retry_info(running: RunningService) -> None:
    code, details = await _status_of(running.address, "busy")
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert details[0].Unpack(info) and details[1].Unpack(retry)
    assert (info.reason, info.domain, dict(info.metadata)) == ("QUEUE_FULL", ERROR_DOMAIN, {"waiting": "7"})
    assert retry.retry_delay.ToNanoseconds() == 2_500_000_000


async def test_unavailable_without_delay_sends_error_info_only(running: RunningService) -> None:
    code, details = await _status_of(running.address, "down")
    assert code == grpc.StatusCode.UNAVAILABLE
    info = error_details_pb2.ErrorInfo()
    assert len(details) == 1 and details[0].Unpack(info)
    assert info.reason == "SERVICE_UNAVAILABLE"
