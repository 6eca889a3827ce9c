"""The scripted OpenAI-compatible test server itself, through the official client."""

from __future__ import annotations

import openai
import pytest

from tests.support.fake_openai import Behaviour, FakeOpenAI, hash_unit_vector


async def test_scripted_chat_behaviours_then_default(fake_openai: FakeOpenAI) -> None:
    client = openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key="k", max_retries=0, timeout=0.5)
    fake_openai.chat_default = lambda request: f"echo {request['messages'][-1]['content']}"
    fake_openai.script_chat(
        Behaviour.reply("first"), Behaviour.rate_limited(retry_after=7), Behaviour.server_error(502),
        Behaviour.hang_forever(),
    )  # fmt: skip

    async def ask(text: str) -> str | None:
        reply = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": text}])
        return reply.choices[0].message.content

    assert await ask("a") == "first"
    with pytest.raises(openai.RateLimitError) as limited:
        await ask("b")
    assert limited.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.InternalServerError):
        await ask("c")
    with pytest.raises(openai.APITimeoutError):
        await ask("d")
    assert await ask("e") == "echo e"
    assert [r.body["messages"][0]["content"] for r in fake_openai.requests_to("chat")] == list("abcde")
    assert fake_openai.pending("chat") == 0
    await client.close()


async def test_embeddings_are_deterministic_unit_vectors(fake_openai: FakeOpenAI) -> None:
    client = openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key="k", max_retries=0)
    as_base64 = await client.embeddings.create(
        model="e", input=["alpha", "beta"]
    )  # the client asks for base64
    as_floats = await client.embeddings.create(model="e", input="alpha", encoding_format="float")
    assert as_base64.data[0].embedding == pytest.approx(as_floats.data[0].embedding, abs=1e-6)
    assert as_floats.data[0].embedding == pytest.approx(hash_unit_vector("alpha", 8))
    assert sum(x * x for x in as_base64.data[1].embedding) == pytest.approx(1.0, abs=1e-5)
    fake_openai.script_embeddings(Behaviour.embed([[1.0, 0.0]]))
    scripted = await client.embeddings.create(model="e", input="x", encoding_format="float")
    assert scripted.data[0].embedding == [1.0, 0.0]
    assert (await client.models.list()).data[0].id == "fake-model"
    await client.close()


def test_runs_in_a_background_thread_for_sync_callers() -> None:
    fake = FakeOpenAI(embedding_dim=4).start_in_thread()
    try:
        client = openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0)
        fake.script_chat(Behaviour.reply("from a thread", latency=0.05))
        reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "from a thread"
        assert (
            len(client.embeddings.create(model="e", input="x", encoding_format="float").data[0].embedding)
            == 4
        )
    finally:
        fake.stop_thread()
