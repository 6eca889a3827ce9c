"""LLM mode end to end through the gateway: the four real services over real sockets, the facets
service with ``providers: [openai, heuristic]`` and the clustering service with ``namer: llm``, both on
the scripted OpenAI-compatible server speaking llama.cpp's dialect (it refuses ``json_schema``). The
results carry the LLM's request summaries (also embedded, ``EMBED_TEXT_REQUEST_SUMMARY``) and the LLM's
cluster names, which were written from those summaries."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, cast

import grpc

from briefxai.common.v1 import common_pb2
from briefxai.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from briefxai_clustering.server import build_service as build_clustering
from briefxai_clustering.settings import ClusteringSettings
from briefxai_common.bootstrap import RunningService, start_service
from briefxai_embedding.server import build_service as build_embedding
from briefxai_embedding.settings import EmbeddingSettings
from briefxai_facets.server import build_service as build_facets
from briefxai_facets.settings import FacetsSettings
from briefxai_gateway.server import build_gateway
from briefxai_gateway.settings import GatewaySettings
from tests.support.fake_openai import FakeOpenAI
from tests.support.services import LOCAL

TOPICS = {
    "password": (
        "a forgotten account password",
        [
            "I forgot my password and cannot log in to my account",
            "The password reset link you sent me has expired",
            "My account is locked after too many wrong password attempts",
        ],
    ),
    "recipe": (
        "a cooking recipe",
        [
            "Can you give me a recipe for banana bread with walnuts?",
            "Suggest a vegetarian lasagna recipe for six people",
            "What recipe can I cook for dinner with rice and beans?",
        ],
    ),
    "python": (
        "a Python programming error",
        [
            "My Python script raises a KeyError when reading the dictionary",
            "Write a Python function that parses a CSV file into rows",
            "Why does my Python pandas merge produce duplicate rows?",
        ],
    ),
}
NAMES = {
    "password": "Recover access to locked accounts",
    "recipe": "Suggest recipes for home cooking",
    "python": "Fix errors in Python scripts",
}


def conversations(count: int) -> list[common_pb2.Conversation]:
    keys = sorted(TOPICS)
    out = []
    for i in range(count):
        key = keys[i % len(keys)]
        texts = TOPICS[key][1]
        out.append(
            common_pb2.Conversation(
                id=f"conv-{i:03d}",
                user_id=f"user-{i % 7}",
                messages=[
                    common_pb2.Message(
                        role=common_pb2.ROLE_USER, content=f"{texts[i % len(texts)]} (my name is Ann {i})"
                    ),
                    common_pb2.Message(role=common_pb2.ROLE_ASSISTANT, content="Here is some help."),
                ],
            )
        )
    return out


def topic_in(text: str) -> str:
    counts = Counter({key: text.lower().count(key) for key in TOPICS})
    return counts.most_common(1)[0][0]


def llm(request: dict[str, Any]) -> str:
    """The scripted model: facets answers for one conversation, or a cluster's name."""
    system, user = (str(m["content"]) for m in request["messages"][:2])
    if system.startswith("You describe one conversation"):
        transcript = user.split("</conversation>", 1)[0]
        key = topic_in(transcript)
        properties = request["response_format"]["schema"]["properties"]  # json_object + schema
        answers: dict[str, Any] = {
            "request": f"The user wants help with {TOPICS[key][0]}.",
            "task": {"value": "coding" if key == "python" else "other", "reason": f"Help with {key}."},
            "language": "en",
            "sentiment": 0.0,
            "concerning": {"value": 1, "reason": "Nothing concerning."},
        }
        return json.dumps({name: answers[name] for name in properties})
    group = re.search(r"<group>\n(.*?)\n</group>", user, re.S)
    assert group is not None, "only base clusters here"
    phrases = {key: TOPICS[key][0] for key in TOPICS}
    key = max(phrases, key=lambda k: group.group(1).count(phrases[k]))
    return json.dumps({"name": NAMES[key], "description": f"Users asked about {phrases[key]}. Nothing else."})


async def test_llm_summaries_and_names_through_the_gateway(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    fake_openai.dialect = "llama_cpp"
    fake_openai.chat_default = llm
    endpoint = {
        "base_url": fake_openai.base_url,
        "model": "small-model",
        "api_key_env": "BRIEFXAI_TEST_UNSET_KEY",
        "timeout_seconds": 5.0,
        "backoff_initial_seconds": 0.0,
        "backoff_max_seconds": 0.01,
    }
    services: list[RunningService] = []
    try:
        embedding = await start_service(build_embedding(EmbeddingSettings.load(**LOCAL, torch_threads=2)))
        services.append(embedding)
        facets = await start_service(
            build_facets(FacetsSettings.load(**LOCAL, providers=["openai", "heuristic"], openai=endpoint))
        )
        services.append(facets)
        clustering = await start_service(
            build_clustering(
                ClusteringSettings.load(
                    **LOCAL, warm_up_map=False, compute_threads=1, namer="llm", llm=endpoint
                )
            )
        )
        services.append(clustering)
        service, _ = build_gateway(
            GatewaySettings.load(
                **LOCAL,
                store_url=f"sqlite:///{tmp_path}/gateway.db",
                embedding_address=embedding.address,
                facets_address=facets.address,
                clustering_address=clustering.address,
                batch_size=8,
                auth={"mode": "off"},  # what is tested here is naming, not who may call
            )
        )
        gateway = await start_service(service)
        services.append(gateway)
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = cast(
                "gateway_pb2_grpc.AnalysisServiceAsyncStub", gateway_pb2_grpc.AnalysisServiceStub(channel)
            )
            created = await stub.CreateAnalysis(
                gateway_pb2.CreateAnalysisRequest(
                    conversations=conversations(30),
                    options=gateway_pb2.AnalysisOptions(
                        k=3, seed=7, embed_text=gateway_pb2.EMBED_TEXT_REQUEST_SUMMARY
                    ),
                )
            )

            async def finished() -> gateway_pb2.Analysis:
                request = gateway_pb2.WatchAnalysisRequest(id=created.analysis.id)
                updates = [u async for u in stub.WatchAnalysis(request)]
                return updates[-1].analysis

            final = await asyncio.wait_for(finished(), 180)
            assert final.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, final.error.message
            results = await stub.GetAnalysisResults(
                gateway_pb2.GetAnalysisResultsRequest(id=created.analysis.id, page_size=100)
            )
    finally:
        for running in reversed(services):
            await running.stop(grace=0)

    # The summaries are the LLM's (not the heuristic's first sentence with "[NAME]"), for everyone.
    for item in results.conversations:
        facets_by_name = {f.facet: f for f in item.facets}
        request, task = facets_by_name["request"], facets_by_name["task"]
        assert request.provider == task.provider == "openai:small-model", item.conversation_id
        assert re.fullmatch(r"The user wants help with [\w ]+\.", request.text)
        assert task.reason.startswith("Help with ")
    # The clusters are named by the LLM from those summaries, one topic each.
    base = [c.cluster for c in results.clusters if c.cluster.level == 0]
    assert sorted(c.name for c in base) == sorted(NAMES.values())
    assert all(c.description.startswith("Users asked about ") and c.keywords for c in base)
    naming = [r for r in fake_openai.requests_to("chat") if "<group>" in r.body["messages"][-1]["content"]]
    assert len(naming) == 1 + 3  # the first was refused (json_schema) and sent again as json_object
    for recorded in naming:
        assert "The user wants help with" in recorded.body["messages"][-1]["content"]
        assert "Ann" not in recorded.body["messages"][-1]["content"]  # summaries, not the conversations
    # llama.cpp's dialect: one refused json_schema request per service, every other in json_object.
    kinds = Counter(r.body.get("response_format", {}).get("type") for r in fake_openai.requests_to("chat"))
    assert kinds == {"json_schema": 2, "json_object": 30 + 3}
