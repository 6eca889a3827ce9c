"""Section 2: facets throughput over gRPC, heuristic and LLM-bound.

Both send sample conversations to the facets service (a real process) as the gateway does: calls of 256
conversations, 2 in flight.

- heuristic: the default configuration (offline provider only);
- LLM-bound: providers ``["openai", "heuristic"]`` against the scripted OpenAI-compatible server
  (``tests/support/fake_openai.py``) answering every chat request after a fixed latency with a valid JSON
  reply for exactly the facets asked. With ``concurrency`` requests in flight and one request per
  conversation, no client can beat ``concurrency / latency`` conversations per second: the bound.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import psutil

from benchmarks.common import ProcessSampler, PySpyProfile, chunks, running_services, service_pids, windowed
from benchmarks.common import channel as open_channel
from briefxai.common.v1 import common_pb2
from briefxai.facets.v1 import facets_pb2, facets_pb2_grpc
from tests.support.fake_openai import JSON, Behaviour, FakeOpenAI

CALL_SIZE = 256  # the gateway's facets_max_conversations_per_call
IN_FLIGHT = 2  # the gateway's facets_max_concurrent_calls
KEY_ENV = "BRIEFXAI_BENCH_LLM_KEY"


def _answer(name: str, schema: JSON) -> Any:
    if schema.get("type") == "object":
        return {"value": _answer(name, schema["properties"]["value"]), "reason": "a benchmark reply"}
    if "enum" in schema:
        return schema["enum"][0]
    if schema.get("type") == "number":
        low = float(schema.get("minimum", 0.0))
        high = float(schema.get("maximum", low + 1.0))
        return (low + high) / 2
    if name == "language":
        return "en"
    return f"A benchmark answer about {name}."


def valid_reply(request: JSON) -> str:
    """A valid JSON answer for exactly the facets the request's json_schema asks for."""
    schema = request["response_format"]["json_schema"]["schema"]
    return json.dumps({name: _answer(name, sub) for name, sub in schema["properties"].items()})


def _extract(
    stub: facets_pb2_grpc.FacetsServiceStub, conversations: Sequence[common_pb2.Conversation]
) -> list[facets_pb2.ConversationFacets]:
    def call(part: Sequence[common_pb2.Conversation]) -> facets_pb2.ExtractFacetsResponse:
        response: facets_pb2.ExtractFacetsResponse = stub.ExtractFacets(
            facets_pb2.ExtractFacetsRequest(conversations=list(part)), timeout=600
        )
        return response

    responses = windowed([lambda p=p: call(p) for p in chunks(conversations, CALL_SIZE)], IN_FLIGHT)  # type: ignore[misc]
    results = [result for response in responses for result in response.results]
    if len(results) != len(conversations):
        raise RuntimeError(f"{len(results)} facet results for {len(conversations)} conversations")
    return results


def _copy(conversation: common_pb2.Conversation, index: int) -> common_pb2.Conversation:
    """The conversation under a new id (ids must be unique within a call)."""
    copy = common_pb2.Conversation()
    copy.CopyFrom(conversation)
    copy.id = f"{conversation.id}-{index}"
    return copy


def _providers(results: Sequence[facets_pb2.ConversationFacets]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for result in results:
        for value in result.values:
            counts["failed" if value.failed else value.provider.split(":", 1)[0] or "?"] += 1
    return dict(sorted(counts.items()))


def heuristic(conversations: Sequence[common_pb2.Conversation]) -> dict[str, Any]:
    """The default facets service (heuristic provider) over gRPC."""
    with (
        running_services(["facets"]) as suite,
        open_channel(suite.plan.service("facets").address, suite.service_token) as ch,
    ):
        stub = facets_pb2_grpc.FacetsServiceStub(ch)
        _extract(stub, conversations[:50])  # warm-up
        with ProcessSampler(service_pids(suite)) as sampler:
            began = time.perf_counter()
            results = _extract(stub, conversations)
            seconds = time.perf_counter() - began
    usage = sampler.summary()
    return {
        "conversations": len(conversations),
        "seconds": round(seconds, 2),
        "conversations_per_second": round(len(conversations) / seconds, 1),
        "service_cpu_seconds": usage["cpu_seconds"].get("facets"),
        "service_peak_rss_mib": usage["peak_rss_mib"].get("facets"),
        "values_by_provider": _providers(results),
    }


def llm_bound(
    conversations: Sequence[common_pb2.Conversation],
    concurrency: int,
    latency: float,
    seconds: float,
    py_spy: str | None = None,
) -> dict[str, Any]:
    """Facets with providers [openai, heuristic] against the fake server at a fixed latency (profiled
    with py-spy when given)."""
    bound = concurrency / latency
    count = max(round(bound * seconds), 2 * concurrency)
    work = [_copy(conversations[i % len(conversations)], i) for i in range(count)]
    warmup = list(conversations[:concurrency])
    fake = FakeOpenAI(chat_default=valid_reply)  # unscripted requests (the warm-up): no latency
    fake.start_in_thread()
    env = {
        "BRIEFXAI_FACETS_PROVIDERS": '["openai", "heuristic"]',
        "BRIEFXAI_FACETS_OPENAI__BASE_URL": fake.base_url,
        "BRIEFXAI_FACETS_OPENAI__API_KEY_ENV": KEY_ENV,
        "BRIEFXAI_FACETS_OPENAI__CONCURRENCY": str(concurrency),
        KEY_ENV: "benchmark-key",
    }
    me = psutil.Process(os.getpid())
    try:
        with (
            running_services(["facets"], env) as suite,
            open_channel(suite.plan.service("facets").address, suite.service_token) as ch,
        ):
            stub = facets_pb2_grpc.FacetsServiceStub(ch)
            _extract(stub, warmup)
            fake.reset()
            # Every timed request (retries included, with room to spare) gets the latency;
            # behaviours left over at the end prove that none fell back to the unscripted default.
            fake.script_chat(*([Behaviour.reply(valid_reply, latency=latency)] * (3 * count)))
            bench_cpu = sum(me.cpu_times()[:2])
            profile = PySpyProfile(py_spy, service_pids(suite)) if py_spy else None
            if profile is not None:
                profile.start()
            with ProcessSampler(service_pids(suite)) as sampler:
                began = time.perf_counter()
                results = _extract(stub, work)
                wall = time.perf_counter() - began
            bench_cpu = sum(me.cpu_times()[:2]) - bench_cpu
            profiled = profile.stop() if profile is not None else None
    finally:
        fake.stop_thread()
    requests = len(fake.requests_to("chat"))
    rate = count / wall
    usage = sampler.summary()
    print(
        f"  facets LLM c={concurrency}: {rate:.1f}/s of {bound:.0f}/s bound ({100 * rate / bound:.0f}%)",
        file=sys.stderr,
    )
    return {
        "concurrency": concurrency,
        "latency_seconds": latency,
        "conversations": count,
        "seconds": round(wall, 2),
        "conversations_per_second": round(rate, 1),
        "bound_per_second": round(bound, 1),
        "percent_of_bound": round(100.0 * rate / bound, 1),
        "chat_requests": requests,
        "max_requests_in_flight": fake.max_in_flight["chat"],
        "all_requests_had_latency": fake.pending("chat") > 0,
        "values_by_provider": _providers(results),
        "facets_service_cpu_seconds": usage["cpu_seconds"].get("facets"),
        "facets_service_peak_rss_mib": usage["peak_rss_mib"].get("facets"),
        "bench_process_cpu_seconds": round(bench_cpu, 1),
        **({"py_spy": profiled} if profiled else {}),
    }


def run(
    conversations: Sequence[common_pb2.Conversation],
    heuristic_count: int,
    concurrencies: Sequence[int],
    latency: float,
    seconds: float,
    py_spy: str | None = None,
) -> dict[str, Any]:
    print(f"  facets heuristic on {heuristic_count} conversations ...", file=sys.stderr, flush=True)
    return {
        "call_size": CALL_SIZE,
        "calls_in_flight": IN_FLIGHT,
        "heuristic": heuristic(conversations[:heuristic_count]),
        "llm": [llm_bound(conversations, c, latency, seconds, py_spy) for c in concurrencies],
    }
