"""privacy.redact_external: the remote embedding endpoint is sent redacted texts."""

from __future__ import annotations

import pytest

from briefxai_embedding.backends.openai import OpenAIBackend
from briefxai_embedding.settings import EmbeddingSettings, OpenAIEmbeddingSettings
from tests.support.fake_openai import FakeOpenAI

KEY = "sk-proj-Zq8Xw2Lm5Np7Rt1Vb3Yc6Hd9"
TEXTS = [f"my key {KEY} fails", "write to jane.doe@example.com", "plain text"]


async def sent_inputs(fake_openai: FakeOpenAI, redact_external: bool) -> list[str]:
    settings = OpenAIEmbeddingSettings(
        base_url=fake_openai.base_url, model="fake", api_key_env="", dimensions=8
    )
    backend = OpenAIBackend(settings, "no-key", redact_external=redact_external)
    await backend.load()
    try:
        result = await backend.embed(TEXTS)
    finally:
        await backend.close()
    assert result.vectors.shape == (3, 8)
    [request] = fake_openai.requests_to("embeddings")
    inputs = request.body["input"]
    assert isinstance(inputs, list)
    return [str(text) for text in inputs]


async def test_texts_are_redacted_before_they_are_sent(fake_openai: FakeOpenAI) -> None:
    assert await sent_inputs(fake_openai, redact_external=True) == [
        "my key [SECRET] fails",
        "write to [EMAIL]",
        "plain text",
    ]


async def test_redaction_can_be_turned_off(fake_openai: FakeOpenAI) -> None:
    assert await sent_inputs(fake_openai, redact_external=False) == TEXTS


@pytest.mark.parametrize(("value", "expected"), [({}, True), ({"redact_external": False}, False)])
def test_setting(value: dict[str, bool], expected: bool) -> None:
    assert EmbeddingSettings.model_validate({"privacy": value}).privacy.redact_external is expected
