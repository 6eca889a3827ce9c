"""``namer: llm``: the real clustering service names clusters through the scripted OpenAI-compatible
server (real sockets both ways); the offline names stand in where the LLM fails; withheld conversations
never reach a prompt; llama.cpp's server is negotiated down to ``json_object`` after one refusal."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import grpc
import numpy as np
import pytest
import structlog
from pydantic import ValidationError

from briefxai.clustering.v1 import clustering_pb2, clustering_pb2_grpc
from briefxai.common.v1 import common_pb2
from briefxai_clustering.llm_naming import NameReply, unique_names
from briefxai_clustering.model import ClusteringInput, ClusteringParams
from briefxai_clustering.naming import ClusterGroup, ClusterLabel
from briefxai_clustering.pipeline import ClusteringPipeline
from briefxai_clustering.server import build_service
from briefxai_common.bootstrap import RunningService, start_service
from briefxai_common.vectors import pack_vectors
from tests.clustering.service_helpers import make_request, service_settings
from tests.clustering.synthetic import TOPICS, make_data
from tests.support.fake_openai import FakeOpenAI, RecordedRequest
from tests.support.http import get_json

SECRET = "Zebulon Quackenbush 4471"  # the text of every withheld conversation


def section(prompt: str, tag: str) -> str:
    found = re.search(rf"<{tag}>\n(.*?)\n</{tag}>", prompt, re.S)
    return found.group(1) if found else ""


def topic_of(text: str) -> str:
    """The planted topic whose words the text uses most (its first word names it)."""
    words = Counter(re.findall(r"[a-z]+", text.lower()))
    best = max(TOPICS, key=lambda topic: (sum(words[w] for w in topic), -TOPICS.index(topic)))
    return best[0]


def user_prompt(request: RecordedRequest | dict[str, Any]) -> str:
    body = request.body if isinstance(request, RecordedRequest) else request
    return str(body["messages"][-1]["content"])


def namer_reply(request: dict[str, Any]) -> str:
    """A correct answer: base clusters are named after their planted topic, upper nodes after the
    topics their children's names mention."""
    prompt = user_prompt(request)
    own = section(prompt, "group")
    if own:
        topic = topic_of(own)
        return json.dumps(
            {
                "name": f"Solve {topic} problems",
                "description": f"Users asked for help with {topic}. Unlike nearby groups, {topic} came first.",
            }
        )
    children = re.findall(r"^- Solve (\w+) problems", section(prompt, "groups"), re.M)
    joined = " and ".join(sorted(set(children))) or "mixed"
    return json.dumps({"name": f"Handle {joined}", "description": f"Groups about {joined}. Two sentences."})


#: What a tiny model answers (docs/quality.md): the task said back instead of a name.
ECHO = json.dumps(
    {
        "name": "Write an imperative phrase",
        "description": "Describe what most of the items have in common, not one or two.",
    }
)


def naming_settings(fake: FakeOpenAI, **llm: Any) -> dict[str, Any]:
    values = {
        "base_url": fake.base_url,
        "model": "namer-model",
        "api_key_env": "BRIEFXAI_TEST_UNSET_KEY",
        "timeout_seconds": 5.0,
        "max_attempts": 2,
        "backoff_initial_seconds": 0.0,
        "backoff_max_seconds": 0.01,
        "concurrency": 3,
        **llm,
    }
    return {"namer": "llm", "llm": values}


Stub = clustering_pb2_grpc.ClusteringServiceStub
Start = Callable[..., Awaitable[tuple[RunningService, Any]]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    services: list[RunningService] = []
    channels: list[grpc.aio.Channel] = []

    async def _start(**overrides: Any) -> tuple[RunningService, Any]:
        running = await start_service(build_service(service_settings(**overrides)))
        services.append(running)
        channel = grpc.aio.insecure_channel(running.address)
        channels.append(channel)
        return running, Stub(channel)

    yield _start
    for channel in channels:
        await channel.close()
    for running in services:
        await running.stop(grace=0)


async def cluster(
    stub: Any, request: clustering_pb2.ClusterEmbeddingsRequest
) -> clustering_pb2.ClusteringResult:
    reply = await stub.ClusterEmbeddings(request)
    return cast(clustering_pb2.ClusteringResult, reply.result)


async def test_llm_names_every_level_with_contrast(start: Start, fake_openai: FakeOpenAI) -> None:
    fake_openai.chat_default = namer_reply
    running, stub = await start(**naming_settings(fake_openai))
    request = make_request(n=240, centers=8, dim=16, k=8, hierarchy_depth=1, max_top_clusters=3, seed=3)
    result = await cluster(stub, request)

    base = [c for c in result.clusters if c.level == 0]
    upper = [c for c in result.clusters if c.level == 1]
    assert len(base) == 8 and 1 < len(upper) < 8
    by_id = {c.id: c for c in result.clusters}
    for node in base:
        assert re.fullmatch(r"Solve \w+ problems", node.name), node.name
        assert node.description.startswith("Users asked for help with")
        assert node.keywords  # the offline keywords stay
    for node in upper:
        children = {by_id[child].name.split()[1] for child in node.child_ids}
        if len(node.child_ids) > 1:
            assert node.name == "Handle " + " and ".join(sorted(children))
        else:  # a single child lends its label
            assert node.name == by_id[node.child_ids[0]].name
    assert len({c.name for c in base}) == len(base)

    prompts = [user_prompt(r) for r in fake_openai.requests_to("chat")]
    base_prompts = [p for p in prompts if "<group>" in p]
    upper_prompts = [p for p in prompts if "<groups>" in p]
    assert len(base_prompts) == 8
    assert len(upper_prompts) == sum(1 for node in upper if len(node.child_ids) > 1)
    for prompt in base_prompts:  # contrastive: the nearest clusters' texts, of other topics
        own, nearby = section(prompt, "group"), section(prompt, "nearby")
        assert 1 <= len(own.splitlines()) <= 20 and len(nearby.splitlines()) == 9  # 3 clusters x 3 texts
        assert any(topic_of(line) != topic_of(own) for line in nearby.splitlines())
    for prompt in upper_prompts:  # children's names and descriptions, not conversation texts
        assert re.search(r"^- Solve \w+ problems: Users asked for help", section(prompt, "groups"), re.M)
    body = fake_openai.requests_to("chat")[0].body
    assert (body["model"], body["temperature"], body["seed"]) == ("namer-model", 0.0, 0)
    assert body["response_format"]["type"] == "json_schema"

    _, health = await get_json(running.http_port, "/health")
    assert health["namer"] == "llm"
    naming = health["llm_naming"]
    assert (naming["jobs"], naming["clusters"], naming["fallbacks"]) == (1, len(result.clusters), 0)
    assert naming["requests"] == len(prompts) and naming["failed_requests"] == 0
    assert naming["input_tokens"] > 0 and naming["output_tokens"] > 0


async def test_withheld_conversations_never_reach_a_prompt(start: Start, fake_openai: FakeOpenAI) -> None:
    """Three conversations of one user, far from everything else, form a cluster under the privacy
    thresholds; with merging off it is withheld, and its text is in no request the LLM server gets."""
    fake_openai.chat_default = namer_reply
    _, stub = await start(**naming_settings(fake_openai), merge_small_clusters=False)
    data = make_data(120, centers=4, dim=16, seed=5)
    outlier = np.zeros((3, 16), dtype=np.float32)
    outlier[:, 0] = -1.0  # the blobs' centres are random: this direction is nobody's
    outlier[:, 1] = [0.01, 0.02, 0.03]
    vectors = np.vstack([data.vectors, outlier / np.linalg.norm(outlier, axis=1, keepdims=True)])
    raw, dim, count = pack_vectors(vectors)
    request = clustering_pb2.ClusterEmbeddingsRequest(
        vectors=common_pb2.PackedVectors(data=raw, dim=dim, count=count),
        ids=[*data.ids, "w1", "w2", "w3"],
        user_ids=[*data.user_ids, "lonely", "lonely", "lonely"],
        texts=[*data.texts, *(f"{SECRET} asks about item {i}" for i in range(3))],
        params=clustering_pb2.ClusteringParams(k=5, hierarchy_depth=1, max_top_clusters=2),
    )
    result = await cluster(stub, request)
    withheld = {a.conversation_id for a in result.assignments if a.withheld}
    assert withheld == {"w1", "w2", "w3"} and result.withheld_count == 3

    chat = fake_openai.requests_to("chat")
    assert len(chat) >= 4  # the four reported clusters (and the level above) were asked about
    for recorded in chat:
        assert SECRET not in json.dumps(recorded.body)
        assert "Zebulon" not in json.dumps(recorded.body)
    assert all(SECRET not in c.name + c.description + " ".join(c.keywords) for c in result.clusters)


async def test_a_cluster_the_llm_cannot_name_keeps_its_offline_name(
    start: Start, fake_openai: FakeOpenAI
) -> None:
    def reply(request: dict[str, Any]) -> str:
        own = section(user_prompt(request), "group")
        if own and topic_of(own) == "recipe":
            return '{"name": ""}'  # invalid every time
        return namer_reply(request)

    fake_openai.chat_default = reply
    _, offline_stub = await start()
    request = make_request(n=180, centers=6, dim=16, k=6, hierarchy_depth=0, seed=1)
    offline = {c.id: c for c in (await cluster(offline_stub, request)).clusters}

    with structlog.testing.capture_logs() as logs:
        _, stub = await start(**naming_settings(fake_openai, max_attempts=3))
        result = await cluster(stub, request)
    named = {c.id: c for c in result.clusters}
    recipe = [i for i, c in named.items() if not c.name.startswith("Solve ")]
    assert len(recipe) == 1
    [cluster_id] = recipe
    assert (named[cluster_id].name, named[cluster_id].description) == (
        offline[cluster_id].name,
        offline[cluster_id].description,
    )
    assert (
        sum(1 for r in fake_openai.requests_to("chat") if "recipe" in section(user_prompt(r), "group")) == 3
    )
    failed = [e for e in logs if e["event"] == "llm_cluster_name_failed"]
    assert [e["cluster_id"] for e in failed] == [cluster_id]
    [summary] = [e for e in logs if e["event"] == "llm_naming"]
    assert (summary["clusters"], summary["named_by_llm"], summary["fallbacks"]) == (6, 5, 1)


async def test_an_answer_that_repeats_the_instructions_is_retried_then_dropped(
    start: Start, fake_openai: FakeOpenAI
) -> None:
    fake_openai.chat_default = lambda request: ECHO
    _, offline_stub = await start()
    _, stub = await start(**naming_settings(fake_openai))
    request = make_request(n=150, centers=5, dim=16, k=5, hierarchy_depth=0, seed=2)
    offline = await cluster(offline_stub, request)
    result = await cluster(stub, request)
    assert [c.name for c in result.clusters] == [c.name for c in offline.clusters]
    assert len(fake_openai.requests_to("chat")) == 5 * 2  # every cluster tried max_attempts times


async def test_an_unreachable_llm_leaves_every_offline_name(start: Start, fake_openai: FakeOpenAI) -> None:
    base_url = fake_openai.base_url
    await fake_openai.stop()
    _, offline_stub = await start()
    _, stub = await start(**naming_settings(fake_openai, base_url=base_url, max_attempts=1))
    request = make_request(n=150, centers=5, dim=16, k=5, seed=2)
    offline = await cluster(offline_stub, request)
    result = await cluster(stub, request)
    assert [(c.id, c.name, c.description) for c in result.clusters] == [
        (c.id, c.name, c.description) for c in offline.clusters
    ]


async def test_llama_cpp_server_refuses_one_request_then_names_everything(
    start: Start, fake_openai: FakeOpenAI
) -> None:
    fake_openai.dialect = "llama_cpp"
    fake_openai.chat_default = namer_reply
    running, stub = await start(**naming_settings(fake_openai))
    request = make_request(n=200, centers=6, dim=16, k=6, hierarchy_depth=1, max_top_clusters=2, seed=4)
    result = await cluster(stub, request)
    await cluster(stub, request)  # a second job: the format is remembered
    assert all(c.name.startswith(("Solve ", "Handle ")) for c in result.clusters)
    kinds = [r.body.get("response_format", {}).get("type") for r in fake_openai.requests_to("chat")]
    assert kinds[0] == "json_schema" and set(kinds[1:]) == {"json_object"}
    _, health = await get_json(running.http_port, "/health")
    state = health["llm_naming"]["response_format"]
    assert (state["current"], len(state["downgrades"])) == ("json_object", 1)
    assert health["llm_naming"]["failed_requests"] == 1 and health["llm_naming"]["fallbacks"] == 0


async def test_same_input_same_prompts(start: Start, fake_openai: FakeOpenAI) -> None:
    """Prompts depend on the input and seed only (not on arrival order or concurrency)."""
    fake_openai.chat_default = namer_reply
    _, stub = await start(**naming_settings(fake_openai, concurrency=8))
    request = make_request(n=200, centers=6, dim=16, seed=6)
    first = await cluster(stub, request)
    prompts_first = Counter(json.dumps(r.body, sort_keys=True) for r in fake_openai.requests_to("chat"))
    fake_openai.reset()
    second = await cluster(stub, request)
    prompts_second = Counter(json.dumps(r.body, sort_keys=True) for r in fake_openai.requests_to("chat"))
    assert prompts_first == prompts_second
    assert [(c.id, c.name) for c in first.clusters] == [(c.id, c.name) for c in second.clusters]


# ---- pieces ---------------------------------------------------------------------------------------------


def test_reply_validation() -> None:
    reply = NameReply.model_validate({"name": ' "Plan  a trip." ', "description": "One.\n Two.", "x": 1})
    assert (reply.name, reply.description) == ("Plan a trip", "One. Two.")
    for bad in ({"name": "", "description": "d"}, {"name": "n"}, {"name": "x" * 500, "description": "d"}):
        with pytest.raises(ValidationError):
            NameReply.model_validate(bad)
    with pytest.raises(ValidationError):
        NameReply.model_validate({"name": '""', "description": "d"})


def test_unique_names_add_the_cluster_id() -> None:
    groups = [ClusterGroup(f"L0-{i}", 0, 5, np.arange(1, dtype=np.int64), np.ones(1)) for i in range(3)]
    labels = {g.cluster_id: ClusterLabel("Same", "d") for g in groups}
    unique_names(groups, labels)
    assert [labels[g.cluster_id].name for g in groups] == ["Same", "Same (L0-1)", "Same (L0-2)"]


async def test_a_namer_that_was_not_started_gives_offline_names(fake_openai: FakeOpenAI) -> None:
    from briefxai_clustering.llm_naming import LLMNamer
    from briefxai_clustering.pipeline import PipelineConfig, offline_namer
    from briefxai_clustering.settings import NamerLLMSettings

    config = PipelineConfig()
    namer = LLMNamer(NamerLLMSettings(base_url=fake_openai.base_url), offline_namer(config))
    data = make_data(60, centers=3, dim=8)
    inputs = ClusteringInput(data.vectors, data.ids, data.user_ids, data.texts)
    params = ClusteringParams(k=3, seed=0)
    expected = ClusteringPipeline(config).run(inputs, params)
    result = await asyncio.to_thread(ClusteringPipeline(config, namer).run, inputs, params)
    assert [c.name for c in result.clusters] == [c.name for c in expected.clusters]
    await namer.start()
    try:  # started, but called from the loop's own thread: it must not wait on itself
        result = ClusteringPipeline(config, namer).run(inputs, params)
    finally:
        await namer.close()
    assert [c.name for c in result.clusters] == [c.name for c in expected.clusters]
    assert fake_openai.requests_to("chat") == []


async def test_the_llm_provider_retry_policy_reaches_the_namer(start: Start, fake_openai: FakeOpenAI) -> None:
    """Without per-endpoint overrides the namer tries as often as ``retry_policies.llm_provider`` says."""
    fake_openai.chat_default = lambda request: ECHO
    settings = naming_settings(
        fake_openai, max_attempts=None, backoff_initial_seconds=None, backoff_max_seconds=None
    )
    policy = {
        "max_attempts": 3,
        "initial_delay_ms": 1,
        "max_delay_ms": 5,
        "jitter": False,
        "budget_ratio": 10,
    }
    _, stub = await start(**settings, retry_policies={"llm_provider": policy})
    await cluster(stub, make_request(n=150, centers=5, dim=16, k=5, hierarchy_depth=0, seed=2))
    assert len(fake_openai.requests_to("chat")) == 5 * 3
